"""`handbackprop check path/to/layers.py::BatchNorm [more targets] [--mutate] [--json out.json]`

Exit code 0 when every target passes, 1 when a check fails, 2 for bad input (a missing file,
a forward that is not array-API clean, a backward returning the wrong number of arrays).
"""
from __future__ import annotations

import argparse
import sys

from .checker import format_report
from .gate import check_target, dumps
from .contract import ContractError, resolve_target


def format_network(ev: dict) -> str:
    out = [f"{ev['layer']}: {'PASS' if ev['passed'] else 'FAIL'} (network)"]
    for name, c in ev["checks"].items():
        out.append(f"  {'ok  ' if c['passed'] else 'FAIL'} {name}: {c['summary']}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="handbackprop", description="Check your own backprop "
                                "against torch autograd on your own forward.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check layers (forward/backward) and networks in a file")
    c.add_argument("targets", nargs="+", help="path/to/file.py or path/to/file.py::Name")
    c.add_argument("--seed", type=int, default=0, help="the point and the upstream gradient")
    c.add_argument("--mutate", action="store_true", help="also mutate each backward and report "
                   "which mutants the check catches")
    c.add_argument("--max-mutants", type=int, default=60)
    c.add_argument("--markdown", action="store_true", help="mutation tables in Markdown")
    c.add_argument("--json", metavar="PATH", help="write the evidence as JSON")
    a = p.parse_args(argv)
    from .mutate import format_mutations  # noqa: F401 - also loads the mutation kinds

    results, bad_input = [], False
    for target in a.targets:
        try:
            found = resolve_target(target)
        except ContractError as e:
            print(f"{target}: error: {e}", file=sys.stderr)
            bad_input = True
            continue
        for name, obj in found:
            ev = check_target(name, obj, seed=a.seed, mutate=a.mutate, max_mutants=a.max_mutants)
            results.append(ev)
            if ev["kind"] == "contract error":
                bad_input = True
                print(f"{name}: error: {ev['failures'][0]}\n")
                continue
            print(format_network(ev) if ev["kind"] == "network" else format_report(ev))
            if "mutations" in ev:
                print(format_mutations(ev["mutations"], markdown=a.markdown))
            print()
    mutated = [r["mutations"] for r in results if "mutations" in r]
    if a.markdown and mutated:
        from .mutate import summary_table
        print(summary_table(mutated) + "\n")
    if a.json:
        with open(a.json, "w") as f:
            f.write(dumps({"results": results}))
    n_fail = sum(not r["passed"] for r in results)
    print(f"{len(results) - n_fail} passed, {n_fail} failed")
    return 2 if bad_input else (1 if n_fail else 0)


if __name__ == "__main__":
    sys.exit(main())
