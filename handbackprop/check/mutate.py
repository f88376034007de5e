"""A mutation proof on the user's own backward: does the check have teeth on this layer?

The backward's source is parsed with `ast`, and each mutant changes one thing, the kinds of
bug people actually write:

- sign:      a + b -> a - b, a - b -> a + b, -a -> a, += <-> -=
- term:      a + b -> a, a + b -> b, a - b -> a, an `x += ...` statement dropped
- factor:    a * b -> a, a * b -> b
- transpose: a.T -> a, a @ b -> a @ b.T
- axis:      axis=0 -> axis=1 (and back), axis=(0, 2) -> axis=0
- constant:  an integer k -> k + 1, a float c -> 2c (0 -> 1)
- 1/N:       a / n -> a, an `x /= n` statement dropped
- accumulate: np.add.at(a, idx, v) -> a[idx] = v (col2im: overlapping patches overwrite)

Each mutant replaces the layer's backward (compiled with the backward's own module globals)
and is checked against the autograd reference computed once. A mutant is caught when the
check fails or the mutant crashes (a shape error is a failure the user would see too).
A survivor is explained: bit-identical gradients (an equivalent mutant: e.g. `.T` of a
1-D array, a branch never taken), or different gradients that still agree with autograd.
"""
from __future__ import annotations

import ast
import copy
import inspect
import types
from dataclasses import dataclass

import numpy as np

from . import contract
from .checker import prepare, run_backward
from .contract import ContractError
from .errors import Thresholds, compare, exceeded


@dataclass
class Mutant:
    index: int  # position of the mutated node in ast.walk order
    kind: str
    line: int
    description: str
    col: int | None = None


def _src(node) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # noqa: BLE001
        return type(node).__name__


def _const_number(node):
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def enumerate_mutants(fn_node: ast.FunctionDef) -> list[Mutant]:
    out = []
    axis_consts = set()
    for i, node in enumerate(ast.walk(fn_node)):
        line = getattr(node, "lineno", fn_node.lineno)
        if isinstance(node, ast.keyword) and node.arg in ("axis", "axes", "dim"):
            v = node.value
            axis_consts |= {id(c) for c in ast.walk(v)}
            if _const_number(v) or (isinstance(v, ast.UnaryOp) and _const_number(v.operand)):
                out.append(Mutant(i, "axis", line, f"axis={_src(v)} -> axis={_other_axis(v)}"))
            elif isinstance(v, ast.Tuple) and len(v.elts) > 1:
                out.append(Mutant(i, "axis", line, f"axis={_src(v)} -> axis={_src(v.elts[0])}"))
        if isinstance(node, ast.BinOp):
            s = _src(node)
            if isinstance(node.op, ast.Add):
                out.append(Mutant(i, "sign", line, f"`{s}`: + -> -"))
                out.append(Mutant(i, "term", line, f"`{s}` -> `{_src(node.left)}`"))
                out.append(Mutant(i, "term:right", line, f"`{s}` -> `{_src(node.right)}`"))
            elif isinstance(node.op, ast.Sub):
                out.append(Mutant(i, "sign", line, f"`{s}`: - -> +"))
                out.append(Mutant(i, "term", line, f"`{s}` -> `{_src(node.left)}`"))
            elif isinstance(node.op, ast.Mult):
                out.append(Mutant(i, "factor", line, f"`{s}` -> `{_src(node.left)}`"))
                out.append(Mutant(i, "factor:right", line, f"`{s}` -> `{_src(node.right)}`"))
            elif isinstance(node.op, ast.Div):
                out.append(Mutant(i, "1/N", line, f"`{s}` -> `{_src(node.left)}` (division dropped)"))
            elif isinstance(node.op, ast.MatMult) and not (isinstance(node.right, ast.Attribute)
                                                           and node.right.attr == "T"):
                out.append(Mutant(i, "transpose", line, f"`{s}` -> `{_src(node.left)} @ ({_src(node.right)}).T`"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if _const_number(node.operand):  # a negative literal is one constant: -1 -> 1
                if id(node.operand) not in axis_consts:
                    axis_consts.add(id(node.operand))
                    out.append(Mutant(i, "constant", line, f"constant {_src(node)} -> {_src(node.operand)}"))
            else:
                out.append(Mutant(i, "sign", line, f"`{_src(node)}` -> `{_src(node.operand)}`"))
        elif isinstance(node, ast.AugAssign):
            s = _src(node)
            if isinstance(node.op, (ast.Add, ast.Sub)):
                out.append(Mutant(i, "sign", line, f"`{s}`: {'+= -> -=' if isinstance(node.op, ast.Add) else '-= -> +='}"))
                out.append(Mutant(i, "term", line, f"`{s}` dropped"))
            elif isinstance(node.op, ast.Div):
                out.append(Mutant(i, "1/N", line, f"`{s}` dropped"))
            elif isinstance(node.op, ast.Mult):
                out.append(Mutant(i, "factor", line, f"`{s}` dropped"))
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and _src(node.value.func).endswith("add.at") and len(node.value.args) == 3):
            a, idx, v = node.value.args
            out.append(Mutant(i, "accumulate", line, f"`{_src(node)}` -> `{_src(a)}[{_src(idx)}] = "
                                                     f"{_src(v)}` (overlaps overwrite, not add)"))
        elif isinstance(node, ast.Attribute) and node.attr == "T":
            out.append(Mutant(i, "transpose", line, f"`{_src(node)}` -> `{_src(node.value)}`"))
    for i, node in enumerate(ast.walk(fn_node)):
        if _const_number(node) and id(node) not in axis_consts:
            new = _changed_constant(node.value)
            out.append(Mutant(i, "constant", getattr(node, "lineno", fn_node.lineno),
                              f"constant {node.value!r} -> {new!r}"))
    return out


def _other_axis(v) -> int:
    val = v.value if isinstance(v, ast.Constant) else -v.operand.value
    return 1 if val == 0 else 0


def _changed_constant(v):
    if isinstance(v, int):
        return v + 1
    return 1.0 if v == 0 else 2.0 * v


def mutate_expr(node: ast.expr, kind: str) -> ast.expr:
    """The mutated copy of one expression (for `axis`, of the keyword's value)."""
    node = copy.deepcopy(node)
    if kind == "axis":
        return node.elts[0] if isinstance(node, ast.Tuple) else ast.Constant(_other_axis(node))
    if kind == "sign" and isinstance(node, ast.BinOp):
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        return node
    if kind in ("sign", "constant") and isinstance(node, ast.UnaryOp):
        return node.operand
    if kind in ("term", "factor", "1/N"):
        return node.left
    if kind in ("term:right", "factor:right"):
        return node.right
    if kind == "transpose" and isinstance(node, ast.Attribute):
        return node.value
    if kind == "transpose":
        node.right = ast.Attribute(value=node.right, attr="T", ctx=ast.Load())
        return node
    if kind == "constant":
        node.value = _changed_constant(node.value)
        return node
    raise ValueError(kind)


def _locate(fn_node: ast.FunctionDef, m: Mutant):
    """A copy of the function, the mutated node in it, and a function replacing that node."""
    tree = copy.deepcopy(fn_node)
    nodes = list(ast.walk(tree))
    node = nodes[m.index]
    parents = {}
    for p in nodes:
        for fname, val in ast.iter_fields(p):
            if isinstance(val, list):
                for j, c in enumerate(val):
                    if isinstance(c, ast.AST):
                        parents[id(c)] = (p, fname, j)
            elif isinstance(val, ast.AST):
                parents[id(val)] = (p, fname, None)

    def replace(target, new):
        p, fname, j = parents[id(target)]
        if j is None:
            setattr(p, fname, new)
        else:
            getattr(p, fname)[j] = new
    tree.decorator_list = []
    return tree, node, replace


def apply(fn_node: ast.FunctionDef, m: Mutant) -> ast.FunctionDef:
    tree, node, replace = _locate(fn_node, m)
    if isinstance(node, ast.keyword):
        node.value = mutate_expr(node.value, m.kind)
    elif m.kind == "accumulate":
        a, idx, v = node.value.args
        replace(node, ast.Assign(targets=[ast.Subscript(value=a, slice=idx, ctx=ast.Store())],
                                 value=v, lineno=node.lineno))
    elif isinstance(node, ast.AugAssign):
        if m.kind == "sign":
            node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        else:
            replace(node, ast.Pass())
    else:
        replace(node, mutate_expr(node, m.kind))
    return ast.fix_missing_locations(tree)


def explain_equivalent(layer, fn_node, m: Mutant, filename, x, params, kwargs, G) -> str:
    """Why a mutant with bit-identical gradients is equivalent: the original is rerun with the
    mutated expression evaluated beside the original one, and their values compared."""
    tree, node, replace = _locate(fn_node, m)
    if isinstance(node, (ast.AugAssign, ast.Expr)):
        return "the statement's effect never reaches the gradient"
    target = node.value if isinstance(node, ast.keyword) else node
    seen = []

    def probe(orig, mutated):
        try:
            same = np.array_equal(np.asarray(orig), np.asarray(mutated))
        except Exception:  # noqa: BLE001 - values of different kinds differ
            same = False
        seen.append((same, orig))
        return orig

    call = ast.Call(func=ast.Name("__hbp_probe", ast.Load()),
                    args=[copy.deepcopy(target), mutate_expr(target, m.kind)], keywords=[])
    if isinstance(node, ast.keyword):
        node.value = call
    else:
        replace(node, call)
    fn = compile_mutant(layer.backward, ast.fix_missing_locations(tree), filename,
                        extra={"__hbp_probe": probe})
    run_backward(contract.Layer(layer.name, layer.forward, fn, obj=layer.obj), x, params, kwargs, G)
    if not seen:
        return "the mutated code never runs at this point (a branch not taken)"
    if all(s for s, _ in seen):
        v = seen[0][1]
        val = f" (= {v!r})" if np.ndim(v) == 0 and not isinstance(v, np.ndarray) else ""
        return (f"`{_src(target)}` and `{_src(mutate_expr(target, m.kind))}` have the same value "
                f"here{val}: equivalent at this point; another point could tell them apart")
    return "the value changes but never reaches the gradient (e.g. a buffer's unread entries)"


def compile_mutant(original, fn_node: ast.FunctionDef, filename: str, extra: dict | None = None):
    """The mutated function in the original's module globals, bound like the original."""
    raw = contract._unwrap(original)
    if raw.__code__.co_freevars:
        raise ContractError(f"{raw.__qualname__} is a closure: mutation needs a plain function")
    module = ast.Module(body=[fn_node], type_ignores=[])
    namespace = {**raw.__globals__, **(extra or {})}
    exec(compile(module, filename, "exec"), namespace)  # noqa: S102 - the user's own code, mutated
    fn = namespace[fn_node.name]
    if hasattr(original, "__self__"):
        return types.MethodType(fn, original.__self__)
    return fn


def select(mutants: list[Mutant], limit: int) -> list[Mutant]:
    """At most `limit`, spread round-robin over the kinds so every kind is represented."""
    if len(mutants) <= limit:
        return mutants
    by_kind: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_kind.setdefault(m.kind.split(":")[0], []).append(m)
    chosen, queues = [], [list(q) for q in by_kind.values()]
    while len(chosen) < limit:
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(q.pop(0))
    return sorted(chosen, key=lambda m: (m.line, m.index, m.kind))


def mutation_test(layer, x=None, params=None, *, kwargs=None, seed: int = 0,
                  thresholds: Thresholds = Thresholds(), max_mutants: int = 60,
                  name: str | None = None) -> dict:
    """Mutate the layer's backward; report which mutants the autograd check catches."""
    from . import reference

    layer = contract.as_layer(layer, name)
    layer, x, params, kwargs, G, _, _, _ = prepare(layer, x, params, kwargs, seed)
    _, ref = reference.torch_gradients(layer, x, params, kwargs, G)
    original = run_backward(layer, x, params, kwargs, G)
    fn_node, filename, _ = contract.source_of(layer.backward)
    all_mutants = enumerate_mutants(fn_node)
    first = inspect.getsourcelines(contract._unwrap(layer.backward))[0][0]
    indent = len(first) - len(first.lstrip())  # the AST's columns are of the dedented source
    nodes = list(ast.walk(fn_node))
    for m in all_mutants:
        m.col = getattr(nodes[m.index], "col_offset", -1 - indent) + indent + 1  # 1-based
    rows = []
    for m in select(all_mutants, max_mutants):
        row = {"line": m.line, "kind": m.kind.split(":")[0], "mutation": m.description,
               "where": f"line {m.line}" + (f", col {m.col}" if m.col is not None else "")}
        try:
            fn = compile_mutant(layer.backward, apply(fn_node, m), filename)
            mutant_layer = contract.Layer(layer.name, layer.forward, fn, obj=layer.obj)
            with np.errstate(all="ignore"):
                grads = run_backward(mutant_layer, x, params, kwargs, G)
            figs = {n: compare(grads[n], ref[n]) for n in ref}
            bad = [n for n, f in figs.items() if exceeded(f, thresholds)]
            if bad:
                worst = max(bad, key=lambda n: figs[n]["norm_rel"])
                row.update(caught=True, how=f"{'dx' if worst == 'x' else 'd' + worst} norm rel "
                                            f"{figs[worst]['norm_rel']:.1e}")
            else:
                same = all(np.array_equal(grads[n], original[n]) for n in original)
                delta = max(compare(grads[n], original[n])["norm_rel"] for n in original)
                row.update(caught=False, how=(
                    "equivalent mutant: bit-identical gradients; " + explain_equivalent(
                        layer, fn_node, m, filename, x, params, kwargs, G) if same else
                    f"equivalent up to rounding: gradients move by {delta:.1e}, the same maths"
                    if delta <= 1e-13 else
                    f"NOT equivalent: gradients move by {delta:.1e} yet stay within the limits"))
        except Exception as e:  # noqa: BLE001 - a crash is a caught mutant
            row.update(caught=True, how=f"crashes: {type(e).__name__}: {str(e).splitlines()[0][:70]}")
        rows.append(row)
    caught = sum(r["caught"] for r in rows)
    crashed = sum(r["caught"] and r["how"].startswith("crashes") for r in rows)
    return {"layer": layer.name, "n_mutants": len(rows), "crashed": crashed, "n_candidates": len(all_mutants),
            "caught": caught, "survived": [r for r in rows if not r["caught"]], "rows": rows}


KINDS = ("sign", "term", "factor", "transpose", "axis", "constant", "1/N", "accumulate")


def summary_table(evs: list[dict]) -> str:
    """One Markdown row per layer: caught/mutants per kind, total, survivors."""
    lines = ["| layer | " + " | ".join(KINDS) + " | caught | by figures / by a crash | survived (all equivalent?) |",
             "|---|" + "---|" * (len(KINDS) + 3)]
    for ev in evs:
        cells = []
        for k in KINDS:
            rows = [r for r in ev["rows"] if r["kind"] == k]
            cells.append(f"{sum(r['caught'] for r in rows)}/{len(rows)}" if rows else "–")
        surv = ev["survived"]
        eq = all(r["how"].startswith("equivalent") for r in surv)
        lines.append(f"| {ev['layer']} | " + " | ".join(cells) + f" | {ev['caught']} of {ev['n_mutants']} | {ev['caught'] - ev['crashed']} / {ev['crashed']} | "
                     f"{len(surv)}{' (yes)' if surv and eq else ' (NO)' if surv else ''} |")
    return "\n".join(lines)


def format_mutations(ev: dict, markdown: bool = False) -> str:
    head = (f"{ev['layer']}: caught {ev['caught']} of {ev['n_mutants']} mutants of the backward "
            f"({ev['caught'] - ev['crashed']} by the figures, {ev['crashed']} by a crash)"
            + (f" (a spread of {ev['n_candidates']} candidates)" if ev["n_candidates"] > ev["n_mutants"] else ""))
    surv = ev["survived"]
    if markdown:
        kinds: dict[str, list[int]] = {}
        for r in ev["rows"]:
            k = kinds.setdefault(r["kind"], [0, 0])
            k[0] += r["caught"]
            k[1] += 1
        lines = [head, "", "| mutation kind | caught | of |", "|---|---|---|"]
        lines += [f"| {k} | {c} | {n} |" for k, (c, n) in kinds.items()]
        if surv:
            lines += ["", f"{len(surv)} survived:"]
            lines += [f"- {r['where']}: {r['mutation']} — {r['how']}" for r in surv]
        return "\n".join(lines)
    lines = [head + (f"; these {len(surv)} survived:" if surv else "; none survived")]
    lines += [f"  {r['where']}: {r['mutation']} — {r['how']}" for r in surv]
    return "\n".join(lines)
