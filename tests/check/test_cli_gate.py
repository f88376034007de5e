"""The command, the gate function, the pytest fixture and the notebook function."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handbackprop.check import GradientMismatch, assert_backward_matches_autograd, gate_module
from handbackprop.check.cli import main
from handbackprop.check.contract import load_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LN = load_module(EXAMPLES / "layernorm.py")


def test_command_passes_the_right_layer(capsys):
    assert main(["check", f"{EXAMPLES}/batchnorm.py::BatchNorm"]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm: PASS" in out and "1 passed, 0 failed" in out


def test_command_fails_the_wrong_layer_naming_the_array(capsys):
    assert main(["check", f"{EXAMPLES}/batchnorm.py::BatchNormDroppedVariancePath"]) == 1
    out = capsys.readouterr().out
    assert "FAIL dx is wrong: max_rel = " in out and "FAIL dgamma" not in out


def test_command_explains_the_wrong_reference(capsys):
    assert main(["check", f"{EXAMPLES}/batchnorm.py::BatchNormEvalModeReference"]) == 1
    out = capsys.readouterr().out
    assert "the reference is wrong, not your backward" in out


def test_bad_input_exits_2_with_the_line(capsys):
    assert main(["check", f"{EXAMPLES}/layernorm.py::LayerNormForwardCallsNumpy"]) == 2
    assert "np.mean" in capsys.readouterr().out
    assert main(["check", f"{EXAMPLES}/nope.py"]) == 2
    assert main(["check", f"{EXAMPLES}/layernorm.py::Nope"]) == 2
    assert "layers and networks there: LayerNorm" in capsys.readouterr().err


def test_mutate_and_json(tmp_path, capsys):
    out_json = tmp_path / "ev.json"
    assert main(["check", f"{EXAMPLES}/layernorm.py::LayerNorm", "--mutate", "--json", str(out_json)]) == 0
    assert "mutants of the backward" in capsys.readouterr().out
    ev = json.loads(out_json.read_text())
    assert ev["results"][0]["mutations"]["n_mutants"] > 0


def test_gate_module_evidence():
    ev = gate_module(f"{EXAMPLES}/conv.py")
    assert ev["passed"] and ev["targets"][0]["verdict"] == "pass"
    json.dumps(ev)  # a workflow rule writes it as is
    ev = gate_module(f"{EXAMPLES}/batchnorm.py")
    assert not ev["passed"]
    assert {t["layer"]: t["verdict"] for t in ev["targets"]} == {
        "BatchNorm": "pass", "BatchNormDroppedVariancePath": "backward wrong",
        "BatchNormEvalModeReference": "reference wrong"}
    ev = gate_module(f"{EXAMPLES}/layernorm.py::LayerNormForwardCallsNumpy")
    assert not ev["passed"] and "not array-API clean" in ev["failures"][0]


def test_pytest_fixture(assert_backward_matches_autograd):
    assert_backward_matches_autograd(LN.LayerNorm)


def test_notebook_function_raises_with_the_table():
    bad = type("Bad", (), {"forward": staticmethod(LN.ln_forward), "example": staticmethod(LN.LayerNorm.example),
                           "backward": staticmethod(lambda d, c: (LN.ln_backward(d, c)[0] * 1.001, LN.ln_backward(d, c)[1]))})
    with pytest.raises(GradientMismatch, match="dx is wrong"):
        assert_backward_matches_autograd(bad)


def test_console_script_runs_without_snakemake():
    exe = shutil.which("handbackprop", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the package is not installed with its console script")
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    assert not name.startswith('snakemake'), 'the checker imported snakemake'\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "from handbackprop.check.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "check", f"{EXAMPLES}/layernorm.py::LayerNorm"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe, "check", f"{EXAMPLES}/batchnorm.py::BatchNormDroppedVariancePath"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "dx is wrong" in r.stdout


def test_a_folder_checks_every_example(capsys):
    assert main(["check", str(EXAMPLES)]) == 2  # one example is deliberately bad input
    out = capsys.readouterr().out
    for line in ("batchnorm.BatchNorm: PASS", "conv.Conv2d: PASS", "attention.SelfAttention: PASS",
                 "layernorm.LayerNorm: PASS", "mlp.TwoLayerNet: PASS (network)",
                 "batchnorm.BatchNormDroppedVariancePath: FAIL (the backward is wrong)",
                 "batchnorm.BatchNormEvalModeReference: FAIL (the reference is wrong, not your backward)",
                 "mlp.TwoLayerNetStepSkipsBiases: FAIL (network)"):
        assert line in out, line
