"""A user's own model in the workflow (handbackprop/study/user_model.py): config errors name
the key, the gate passes the right example and fails the wrong one, a failed gate stops every
run of that model, and the study's loop on a user model equals a float64 torch replay."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, copy_repo, load_config, make_split, snakemake

from handbackprop.nn import schedule
from handbackprop.nn.train import shuffle_stream
from handbackprop.study import plan, runs, user_gate, user_model
from handbackprop.study.plan import ConfigError
from handbackprop.study.tables import networks_from

TARGET = "examples/cifar_mlp.py::CifarMLP"
WRONG = "examples/cifar_mlp.py::CifarMLPReluBackwardBug"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # module paths in a config are relative to the working directory


def _config(entry, **extra):
    cfg = load_config()
    cfg["models"]["student_mlp"] = entry
    for key, value in extra.items():
        cfg["bonus"][key]["model"] = value
    return cfg


NO_SCORES = '''
import numpy as np
class Net:
    n_classes, input_dim, decayed, lr = 10, 3072, ("W",), 0.1
    def init_params(self, rng): return {"W": np.zeros((3072, 10))}
    def data(self, rng): return np.zeros((2, 3072)), np.zeros(2, int)
    def loss(self, p, X, y): return 0.0
    def loss_and_grads(self, p, X, y): return 0.0, {"W": np.zeros((3072, 10))}
    def step(self, p, g, lr): pass
'''


@pytest.mark.parametrize("entry, extra, key, words", [
    ({"module": "examples/nowhere.py::CifarMLP", "eta_max": 0.1}, {}, "models.student_mlp.module",
     "no such file: examples/nowhere.py"),
    ({"module": "examples/cifar_mlp.py::Missing", "eta_max": 0.1}, {}, "models.student_mlp.module",
     "defines no 'Missing'"),
    ({"module": "{tmp}/no_scores.py::Net", "eta_max": 0.1}, {}, "models.student_mlp.module",
     "no `scores`"),
    ({"module": TARGET}, {}, "models.student_mlp.eta_max", "no learning-rate range test"),
    ({"module": TARGET, "eta_max": 0.1, "dropout": 0.3}, {}, "models.student_mlp.dropout",
     "built-in networks only"),
    ({"module": TARGET, "eta_max": 0.1}, {"aug_vs_lambda": "student_mlp"}, "bonus.aug_vs_lambda.model",
     "user model"),
])
def test_config_errors_name_the_key(tmp_path, entry, extra, key, words):
    (tmp_path / "no_scores.py").write_text(NO_SCORES)
    entry = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in entry.items()}
    with pytest.raises(ConfigError) as err:
        plan.validate(_config(entry, **extra))
    assert err.value.key == key
    assert words in str(err.value)


def test_the_quick_profile_enters_the_example_and_no_range_test_for_it():
    cfg = load_config()
    plan.validate(cfg)
    assert user_model.is_user_model(cfg["models"]["student_mlp"])
    assert "student_mlp" in cfg["search"]["models"] and "student_mlp" in cfg["final"]["models"]
    assert "student_mlp" not in plan.range_models(cfg)
    real = yaml.safe_load((REPO / "config.yaml").read_text())
    assert not any(user_model.is_user_model(e) for e in real["models"].values())


def test_a_relative_module_path_is_found_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snakemake --directory elsewhere: the examples are the project's
    plan.validate(load_config())
    assert user_model.module_file(TARGET) == REPO / "examples" / "cifar_mlp.py"
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "cifar_mlp.py").write_text("")  # the working directory's comes first
    assert user_model.module_file(TARGET) == Path("examples/cifar_mlp.py")


def test_gate_passes_the_example_and_fails_the_relu_bug_naming_the_arrays():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3072)), rng.integers(0, 10, 20)
    good = user_gate.gate(TARGET, X, y)
    assert good["passed"], good["failures"]
    assert set(good["evidence"]["checks"]) == {"initial loss", "initial scale", "gradient",
                                               "overfit", "trajectory"}
    assert good["module_sha256"] == user_model.file_sha256("examples/cifar_mlp.py")
    bad = user_gate.gate(WRONG, X, y)
    assert not bad["passed"]
    gradient = bad["evidence"]["checks"]["gradient"]
    assert not gradient["passed"] and "dW1 is wrong" in gradient["summary"]
    assert "db1 is wrong" in gradient["summary"] and "dW2" not in gradient["summary"]


def _torch_replay(X, y, lam, seed, spec, steps):
    """The same run in float64 torch: the user's loss (autograd) + λ‖W‖² on the decayed
    weights, plain SGD, the study's cyclic η and mini-batch order."""
    net = user_model.load(TARGET)
    p = {k: torch.tensor(v, requires_grad=True)
         for k, v in net.init_params(np.random.default_rng(seed)).items()}
    batches = shuffle_stream(seed, len(y), spec["batch_size"])
    for step in range(steps):
        idx = next(batches)
        eta = schedule.cyclic_lr(step, spec["eta_min"], spec["eta_max"], spec["n_s"])
        cost = net.loss(p, torch.tensor(X[idx]), torch.tensor(y[idx]))
        cost = cost + lam * sum((p[k] ** 2).sum() for k in net.decayed)
        grads = torch.autograd.grad(cost, list(p.values()))
        with torch.no_grad():
            for t, g in zip(p.values(), grads):
                t -= eta * g
    return {k: v.detach().numpy() for k, v in p.items()}


@pytest.mark.parametrize("lam", [0.0, 0.01])
def test_the_study_loop_on_a_user_model_equals_a_float64_torch_replay(tmp_path, lam):
    split = tmp_path / "search"
    make_split(split, n_train=40, n_val=10, n_test=10, seed=5)
    spec = {"module": TARGET, "dropout": 0.0, "batch_size": 10, "eta_min": 1e-5, "eta_max": 0.05,
            "n_s": 3, "points_per_cycle": 2, "train_eval_size": 20, "divergence_factor": 10}
    net, result, metrics = runs.run(split, spec, lam, cycles=2, seed=3, dtype="float64",
                                    evaluate_test=True, log=lambda *a: None)
    X, y = np.load(split / "X_train.npy").astype(np.float64), np.load(split / "y_train.npy")
    ref = _torch_replay(X, y, lam, seed=3, spec=spec, steps=result.steps)
    assert result.steps == 2 * 3 * 2
    for k, v in ref.items():
        assert np.linalg.norm(net.params[k] - v) <= 1e-12 * np.linalg.norm(v), k
    # the metrics the tables and report read, as the study's own runs write them
    loss = float(user_model.load(TARGET).loss(ref, X, y))
    reg = lam * sum(float((ref[k] ** 2).sum()) for k in ("W1", "W2"))
    assert metrics["train_loss"] == pytest.approx(loss, rel=1e-10)
    assert metrics["train_cost"] == pytest.approx(loss + reg, rel=1e-10)
    assert {"val_accuracy", "test_accuracy", "confusion", "n_s", "steps"} <= set(metrics)
    assert result.history[0]["step"] == 0 and result.history[-1]["step"] == 12
    # the ensembles and the audit rebuild it from its weights through its module
    np.savez(tmp_path / "weights.npz", **net.arrays())
    (again,) = networks_from([tmp_path / "weights.npz"], spec, "float64")
    assert again.evaluate(X, y, lam) == net.evaluate(X, y, lam)


def test_a_wrong_user_model_fails_its_gate_and_none_of_its_runs_train(tmp_path):
    work = copy_repo(tmp_path / "repo")
    over = tmp_path / "wrong.yaml"
    over.write_text(yaml.safe_dump({"models": {"student_mlp": {"module": WRONG, "eta_max": 0.1}}}))
    proc = snakemake(work, "--keep-going", "results/quick/search/student_mlp/coarse.json",
                     configfiles=(REPO / "config" / "quick.yaml", over), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "gate_user_model" in out and "dW1 is wrong" in out
    res = work / "results" / "quick"
    assert not (res / "gates" / "user" / "student_mlp.json").exists()
    assert (res / "gates" / "gradcheck.json").exists()  # the study's own gates passed
    assert not list((res / "search").glob("student_mlp/coarse/*/seed*/metrics.json"))
    assert "dW1 is wrong" in (res / "logs" / "gates" / "user" / "student_mlp.log").read_text()
