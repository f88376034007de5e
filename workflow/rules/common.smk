import sys
from pathlib import Path

from snakemake.utils import validate

ROOT = Path(workflow.basedir)
sys.path.insert(0, str(ROOT))  # this checkout's package, the one the gates verify

from handbackprop import search as lam_search  # noqa: E402

validate(config, schema=str(ROOT / "workflow/schemas/config.schema.yaml"))


def config_error(key, problem):
    raise ValueError(f"config error at {key}: {problem}")


for _key in ("search", "final"):
    for _m in config[_key]["models"]:
        if _m not in config["models"]:
            config_error(f"{_key}.models", f"unknown model {_m!r}; defined: {sorted(config['models'])}")
for _m in config["final"]["models"]:
    if _m not in config["search"]["models"]:
        config_error("final.models", f"{_m!r} needs a lambda search: add it to search.models")
for _m in config["final"]["ensemble"]:
    if _m not in config["final"]["models"]:
        config_error("final.ensemble", f"{_m!r} is not in final.models")
if not config["search"]["coarse"]["l_min"] < config["search"]["coarse"]["l_max"]:
    config_error("search.coarse", "l_min must be below l_max")
for _m in config["search"]["per_model"]:
    if _m not in config["models"]:
        config_error("search.per_model", f"unknown model {_m!r}")
for _name in ("ablation", "aug_vs_lambda"):
    _b = config.get("bonus", {}).get(_name)
    if _b and _b["model"] not in config["models"]:
        config_error(f"bonus.{_name}.model", f"unknown model {_b['model']!r}")
if config.get("bonus", {}).get("ablation") and config["bonus"]["ablation"]["model"] not in config["final"]["models"]:
    config_error("bonus.ablation.model", "the ablated model needs its final runs (add it to final.models)")


R = config["results"]
THREADS = config["threads"]
# Editing any of these reruns the gates, and through them everything downstream.
MODEL_CODE = sorted(str(p) for p in (ROOT / "handbackprop/nn").glob("*.py")) + sorted(
    str(p) for p in (ROOT / "handbackprop/gates").glob("*.py"))
GATE_EVIDENCE = [f"{R}/gates/{g}.json" for g in ("gradcheck", "overfit", "trajectory")]


wildcard_constraints:
    split="search|final",
    model="[A-Za-z0-9_]+",
    i=r"\d+",
    seed=r"\d+",


def split_stats(split):
    return f"{R}/data/{split}/stats.json"


def split_files(split):
    return [f"{R}/data/{split}/{name}" for name in
            ("X_train.npy", "y_train.npy", "X_val.npy", "y_val.npy", "X_test.npy", "y_test.npy",
             "norm.npz")]


def model_spec(model, **overrides):
    """The training defaults with the model's own settings on top."""
    spec = {**config["training"], **config["models"][model], **overrides}
    spec.setdefault("dropout", 0.0)
    return spec


def search_settings(model):
    per = config["search"]["per_model"].get(model, {})
    return {
        "n_coarse": per.get("n_coarse", config["search"]["coarse"]["n"]),
        "n_fine": per.get("n_fine", config["search"]["fine"]["n"]),
        "coarse_cycles": per.get("cycles", config["search"]["coarse"]["cycles"]),
        "fine_cycles": per.get("cycles", config["search"]["fine"]["cycles"]),
    }


def coarse_exponents(model):
    c = config["search"]["coarse"]
    return lam_search.coarse_exponents(c["l_min"], c["l_max"], search_settings(model)["n_coarse"],
                                       c["sampling"], c["seed"])


def final_targets():
    return [f"{R}/final/{m}/summary.json" for m in config["final"]["models"]]


def bonus_targets():
    out = []
    if config.get("bonus", {}).get("ablation"):
        out.append(f"{R}/bonus/ablation.json")
    if config.get("bonus", {}).get("aug_vs_lambda"):
        out.append(f"{R}/bonus/aug_vs_lambda.json")
    return out


def all_targets():
    return [f"{R}/report/report.html", f"{R}/report/report.md"]
