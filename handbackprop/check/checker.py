"""check_layer: a user's backward against autograd on the user's own forward, finite
differences and the long-double gradient, with verdicts that say which side is wrong."""
from __future__ import annotations

import numpy as np

from . import contract, reference
from .contract import ContractError, Layer
from .errors import EXPLANATION, Thresholds, compare, exceeded, magnitude_note, norm_relative_error

FLOAT32_NOTE = ("inputs were float32: checked in float64 first, because float32 rounding "
                "(eps 1.2e-7) is within 1e-4 of a real bug and would blur the verdict; a backward "
                "that is right in float64 is the same formula in float32")


class GradientMismatch(AssertionError):
    pass


def prepare(layer, x=None, params=None, kwargs=None, seed: int = 0):
    """The point, in float64, and a random upstream gradient for the layer's output."""
    layer = contract.as_layer(layer)
    rng = np.random.default_rng(seed)
    if x is None:
        x, params, ex_kwargs = contract.example_point(layer, rng)
        kwargs = {**ex_kwargs, **(kwargs or {})}
    params, kwargs = dict(params or {}), dict(kwargs or {})
    notes = []
    dtypes = {np.asarray(a).dtype for a in (x, *params.values())}
    if np.dtype(np.float32) in dtypes or np.dtype(np.float16) in dtypes:
        notes.append(FLOAT32_NOTE)
    x = np.array(x, dtype=np.float64)
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    out, _ = contract.split_forward(layer.forward(x.copy(), _copy(params), **kwargs),
                                    f"{layer.name}.forward")
    if not isinstance(out, np.ndarray):
        raise ContractError(f"{layer.name}.forward returned {type(out).__name__} for NumPy "
                            f"inputs, not an array")
    # Never ones: with dout = 1 batch norm's true dx is exactly 0 and a wrong one can pass.
    # Its own stream, never the point's: an example drawn as 2 + 3 z from default_rng(seed)
    # with G = z from the same seed makes G affine in x, which batch norm's backward maps to
    # ~0 (a point where every relative error is noise; tests/check has it).
    G = np.random.default_rng([seed, 0x6A7]).standard_normal(out.shape)
    return layer, x, params, kwargs, G, out, rng, notes


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def run_backward(layer: Layer, x, params, kwargs, G, dtype=np.float64) -> dict:
    """The user's forward then backward on fresh copies (a backward may write into its cache)."""
    _, cache = contract.split_forward(layer.forward(x.copy(), _copy(params), **kwargs),
                                      f"{layer.name}.forward")
    dx, dp = contract.split_backward(layer.backward(G.copy(), cache), x, params,
                                     f"{layer.name}.backward")
    return {"x": dx, **dp}


def verdict_of(arrays: dict, thresholds: Thresholds) -> tuple[str, list[str]]:
    """'pass', 'backward wrong' or 'reference wrong', and a message per failing array.
    Three opinions vote: the backward against autograd (ref), against finite differences of the
    user's forward (fd), and autograd against the same finite differences (ref_fd)."""
    failures, ref_suspect = [], []
    for name, f in arrays.items():
        bad_ref = exceeded({"max_rel": f["max_rel"], "norm_rel": f["norm_rel"]}, thresholds)
        bad_fd = f.get("fd_norm_rel") is not None and not f["fd_norm_rel"] <= thresholds.fd_norm_rel
        ref_vs_fd_bad = f.get("ref_fd_norm_rel") is not None and not f["ref_fd_norm_rel"] <= thresholds.fd_norm_rel
        label = "dx" if name == "x" else f"d{name}"
        if bad_ref and not bad_fd and ref_vs_fd_bad:
            ref_suspect.append(name)
            failures.append(
                f"{label}: the REFERENCE is at fault, not the backward — your backward agrees "
                f"with finite differences of your own forward ({f['fd_norm_rel']:.1e}), the "
                f"reference differs from both (norm rel {f['norm_rel']:.1e} against your "
                f"backward, {f['ref_fd_norm_rel']:.1e} against finite differences)")
        elif bad_ref or bad_fd:
            what = ", ".join(f"{k} = {v:.2e} > {lim:.0e}" for k, v, lim in bad_ref)
            if bad_fd:
                what += (", " if what else "") + f"finite differences norm rel {f['fd_norm_rel']:.2e}"
            failures.append(f"{label} is wrong: {what} ({magnitude_note(max(f['norm_rel'], f['max_rel']))})")
    if not failures:
        return "pass", []
    return ("reference wrong" if len(ref_suspect) == len(failures) else "backward wrong"), failures


def check_layer(layer, x=None, params=None, *, kwargs=None, seed: int = 0, fd_coords: int = 12,
                thresholds: Thresholds = Thresholds(), fd: bool = True, exact: bool = True,
                name: str | None = None) -> dict:
    """Check one layer's backward. `layer`: an object/class with forward and backward (see
    handbackprop.check.contract); `x`, `params`: the point, or None for layer.example(rng).
    Returns the evidence: per array (x and each parameter) max_rel and norm_rel against
    autograd, fd_norm_rel against finite differences, exactness errors and ratio; a verdict."""
    layer = contract.as_layer(layer, name)
    layer, x, params, kwargs, G, out, rng, notes = prepare(layer, x, params, kwargs, seed)
    ours = run_backward(layer, x, params, kwargs, G)
    t_out, theirs = reference.torch_gradients(layer, x, params, kwargs, G)
    if t_out.shape != out.shape:
        raise ContractError(f"{layer.name}: the reference forward's output has shape "
                            f"{t_out.shape}, yours {out.shape}")
    forward_rel = norm_relative_error(t_out, out)
    arrays = {}
    inputs = {"x": x, **params}
    for n in inputs:
        arrays[n] = {"shape": list(inputs[n].shape), **compare(ours[n], theirs[n])}
        if fd:
            k = min(fd_coords, inputs[n].size)
            coords = np.sort(rng.choice(inputs[n].size, size=k, replace=False))
            num = reference.finite_differences(layer, x, params, kwargs, G, n, coords)
            arrays[n]["fd_norm_rel"] = norm_relative_error(ours[n].reshape(-1)[coords], num)
            arrays[n]["ref_fd_norm_rel"] = norm_relative_error(theirs[n].reshape(-1)[coords], num)
            arrays[n]["fd_coords"] = int(k)
    exact_note = None
    if exact:
        ld, exact_note = reference.longdouble_gradients(layer, x, params, kwargs, G)
        if ld is not None:
            for n in inputs:
                if exceeded(arrays[n], thresholds):  # a wrong formula: its long double is not exact
                    continue
                e_o, e_t = reference.norm_rel_ld(ours[n], ld[n]), reference.norm_rel_ld(theirs[n], ld[n])
                arrays[n].update({"exact_ours_err": e_o, "exact_torch_err": e_t,
                                  "exact_ratio": e_o / e_t if e_t > 0 else (1.0 if e_o == 0 else float("inf"))})
    verdict, failures = verdict_of(arrays, thresholds)
    if verdict == "pass":
        # Below ~50 eps both errors are rounding noise and their ratio says nothing.
        worse = [n for n, f in arrays.items() if f.get("exact_ratio") is not None
                 and not f["exact_ratio"] <= thresholds.exact_ratio and f["exact_ours_err"] > 1e-14]
        for n in worse:  # right maths, more rounding than autograd: a warning, not a failure
            notes.append(f"{'dx' if n == 'x' else 'd' + n}: {arrays[n]['exact_ratio']:.2g}x "
                         f"autograd's rounding error against the long-double gradient (limit "
                         f"{thresholds.exact_ratio:g}); right, but numerically worse")
    if FLOAT32_NOTE in notes:
        # Then in float32 itself, against the float64 reference: rounding only, read against
        # float32's eps (1.2e-7); above 1e-3 the float32 run has a problem of its own (an
        # overflow, a constant that forces float64 and back, a lossy formula).
        f32 = run_backward(layer, x.astype(np.float32), {k: v.astype(np.float32) for k, v in params.items()},
                           kwargs, G.astype(np.float32))
        for n in inputs:
            arrays[n]["float32_norm_rel"] = norm_relative_error(f32[n].astype(np.float64), theirs[n])
        worst = max(inputs, key=lambda n: arrays[n]["float32_norm_rel"])
        e32 = arrays[worst]["float32_norm_rel"]
        notes.append(f"then in float32 against the float64 reference: worst "
                     f"{'dx' if worst == 'x' else 'd' + worst} norm rel {e32:.1e} "
                     + ("(float32 rounding; eps 1.2e-7)" if e32 <= 1e-3 else
                        "— WARNING: beyond float32 rounding; the float32 run has a problem of its own"))
    if forward_rel > 1e-10:
        notes.append(f"the reference forward's output differs from yours by {forward_rel:.1e} "
                     f"(norm rel): it computes a different function")
    elif layer.torch_forward is not None:
        notes.append(f"the reference is your torch_forward (output agrees to {forward_rel:.1e}); "
                     f"equal values do not imply equal derivatives")
    return {"layer": layer.name, "passed": verdict == "pass", "verdict": verdict,
            "failures": failures, "notes": notes, "arrays": arrays, "seed": seed,
            "upstream": f"random normal {list(G.shape)} (seed {seed}), never ones",
            "reference": "torch_forward" if layer.torch_forward is not None else "your forward under torch autograd",
            "forward_norm_rel": forward_rel, "exactness": exact_note,
            "thresholds": thresholds.__dict__}


def format_report(ev: dict) -> str:
    """A readable table for one layer."""
    head = ("array", "shape", "max rel", "norm rel", "fin. diff", "ref vs fd", "exact ours", "exact torch", "ratio")
    rows = []
    for n, f in ev["arrays"].items():
        def g(k, fmt="{:.1e}"):
            return fmt.format(f[k]) if f.get(k) is not None else "-"
        rows.append(("dx" if n == "x" else f"d{n}", "×".join(map(str, f["shape"])), g("max_rel"),
                     g("norm_rel"), g("fd_norm_rel"), g("ref_fd_norm_rel"), g("exact_ours_err"),
                     g("exact_torch_err"), g("exact_ratio", "{:.2f}")))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    status = {"pass": "PASS", "backward wrong": "FAIL (the backward is wrong)",
              "reference wrong": "FAIL (the reference is wrong, not your backward)"}[ev["verdict"]]
    out = [f"{ev['layer']}: {status}",
           f"  reference: {ev['reference']}; upstream gradient: {ev['upstream']}",
           "  " + line(head), "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + line(r) for r in rows]
    out += [f"  FAIL {m}" for m in ev["failures"]]
    out += [f"  note: {m}" for m in ev["notes"]]
    if ev.get("exactness"):
        out.append(f"  exactness: {ev['exactness']}")
    out.append("  " + EXPLANATION.format(**ev["thresholds"]))
    return "\n".join(out)


def assert_backward_matches_autograd(layer, x=None, params=None, **kw) -> dict:
    """For tests and notebooks: raises GradientMismatch with the table if the check fails."""
    ev = check_layer(layer, x, params, **kw)
    if not ev["passed"]:
        raise GradientMismatch(format_report(ev))
    return ev
