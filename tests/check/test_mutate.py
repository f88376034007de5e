"""The mutation proof: mutants are real changes of the user's backward, the check catches the
non-equivalent ones, and every survivor is explained."""
import ast
from pathlib import Path

import numpy as np
import pytest

from handbackprop.check.contract import as_layer, load_module, source_of
from handbackprop.check.mutate import apply, compile_mutant, enumerate_mutants, mutation_test

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BN, CONV, LN, ATT = (load_module(EXAMPLES / f"{n}.py") for n in ("batchnorm", "conv", "layernorm", "attention"))


@pytest.mark.parametrize("layer", [BN.BatchNorm, LN.LayerNorm, CONV.Conv2d, ATT.SelfAttention],
                         ids=["bn", "ln", "conv", "attn"])
def test_every_mutant_is_caught_or_explained_as_equivalent(layer):
    ev = mutation_test(layer)
    assert 10 <= ev["n_mutants"] <= 60
    assert ev["caught"] == sum(r["caught"] for r in ev["rows"])
    for r in ev["survived"]:
        assert r["how"].startswith("equivalent"), r  # a non-equivalent survivor is a hole in the check


def test_mutant_kinds_cover_the_issue_list():
    kinds = set()
    for layer in (BN.BatchNorm, LN.LayerNorm, CONV.Conv2d):
        node, _, _ = source_of(as_layer(layer).backward)
        kinds |= {m.kind.split(":")[0] for m in enumerate_mutants(node)}
    assert {"sign", "term", "transpose", "axis", "constant", "1/N"} <= kinds


def test_a_mutant_really_changes_the_code_and_its_gradient():
    layer = as_layer(BN.BatchNorm)
    node, filename, _ = source_of(layer.backward)
    m = next(m for m in enumerate_mutants(node) if m.kind == "1/N")
    mutated = apply(node, m)
    assert ast.unparse(mutated) != ast.unparse(node)
    fn = compile_mutant(layer.backward, mutated, filename)
    rng = np.random.default_rng(0)
    x, params = BN.bn_example(rng)
    G = rng.normal(size=x.shape)
    dx, _ = fn(G, BN.bn_forward(x, params)[1])
    dx0, _ = BN.bn_backward(G, BN.bn_forward(x, params)[1])
    np.testing.assert_allclose(dx, dx0 * x.shape[0], rtol=1e-12)  # exactly the dropped 1/N


def test_the_buggy_layers_own_mutants_are_judged_against_autograd_not_the_bug():
    """Mutating an already-wrong backward: nearly every mutant is still wrong, so 'caught';
    the ones that survive would have to fix the bug — there are none here."""
    ev = mutation_test(BN.BatchNormDroppedVariancePath)
    assert ev["caught"] == ev["n_mutants"]


def test_bounded_and_spread_over_kinds():
    ev = mutation_test(CONV.Conv2d, max_mutants=12)
    assert ev["n_mutants"] == 12 and len({r["kind"] for r in ev["rows"]}) >= 5


def test_col2im_overwrite_is_caught_by_the_figures_not_a_crash():
    ev = mutation_test(CONV.Conv2d)
    (row,) = [r for r in ev["rows"] if r["kind"] == "accumulate"]
    assert row["caught"] and row["how"].startswith("dx norm rel")


def test_readme_mutation_table_is_the_tools_output():
    """The README's table must be pasted from the tool, never edited by hand."""
    from handbackprop.check.mutate import summary_table
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Check your own backprop"):readme.index("## The DAG")]
    evs = [mutation_test(layer) for layer in (BN.BatchNorm, LN.LayerNorm, CONV.Conv2d, ATT.SelfAttention)]
    for line in summary_table(evs).splitlines():
        assert line in section, line
