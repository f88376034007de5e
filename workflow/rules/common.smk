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


SYNTH = config["data"]["synthetic"]
SYNTH_TARBALL = f"{R}/source/cifar-10-synthetic.tar.gz"
SYNTH_MD5 = f"{R}/source/cifar-10-synthetic.tar.gz.md5"
COARSE = config["search"]["coarse"]
FINE = config["search"]["fine"]
FINAL = config["final"]
BONUS = config.get("bonus", {})
ABL = BONUS.get("ablation")
AVL = BONUS.get("aug_vs_lambda")


def download_inputs(wildcards):
    if SYNTH:
        return {"source": SYNTH_TARBALL, "md5_file": SYNTH_MD5}
    return {"md5_file": config["data"]["md5_file"]} if config["data"]["md5_file"] else {}


def gate_settings(gate):
    return config["gates"][gate]


def bug_table_settings():
    g, b = config["gates"], config["gates"]["bug_table"]
    return {
        "gradcheck": {**g["gradcheck"], "n_images": b["n_images"], "fd_coords": 5},
        "overfit": {**g["overfit"], "steps": b["overfit_steps"],
                    "variants": {"two_layer": {"hidden": [50]}}},
        "trajectory": {**g["trajectory"],
                       "variants": {k: v for k, v in g["trajectory"]["variants"].items()
                                    if v.get("optimizer", "sgd") == "sgd"}},
    }


def search_run(stage, model, i):
    return f"{R}/search/{model}/{stage}/{i}/metrics.json"


def search_runs(stage, model):
    """metrics.json of every job of one model's coarse or fine search."""
    return [search_run(stage, model, i) for i in range(search_settings(model)[f"n_{stage}"])]


def final_runs(model, name="metrics.json"):
    return [f"{R}/final/{model}/seed{s}/{name}" for s in FINAL["seeds"]]


def aug_lambda_runs():
    if not AVL:
        return []
    return expand(f"{R}/bonus/aug_vs_lambda/{{aug}}/l{{i}}_seed{{seed}}/metrics.json",
                  aug=["aug", "noaug"], i=range(len(AVL["exponents"])), seed=AVL["seeds"])


def ablation_variants():
    """Each improvement switched off in turn, and all off; 'all' is the final runs themselves."""
    m = config["models"][ABL["model"]] if ABL else {}
    variants = {}
    if max(m.get("hidden") or [0]) > 50:
        variants["no_width"] = {"hidden": [50]}
    if m.get("dropout", 0.0) > 0:
        variants["no_dropout"] = {"dropout": 0.0}
    if m.get("flip") or m.get("max_shift"):
        variants["no_augmentation"] = {"flip": False, "max_shift": 0}
    if m.get("optimizer", "sgd") != "sgd":
        variants["no_momentum"] = {"optimizer": "sgd"}
    all_off = {}
    for v in variants.values():
        all_off.update(v)
    variants["all_off"] = all_off
    return variants


def ablation_runs(wildcards=None):
    runs = [f"{R}/final/{ABL['model']}/seed{s}/metrics.json" for s in ABL["seeds"]]
    runs += [f"{R}/bonus/ablation/{v}/seed{s}/metrics.json"
             for v in ablation_variants() for s in ABL["seeds"]]
    return runs


def train_mem_mb(model):
    """Measured on the real data: ~700 MB resident (mostly the memory-mapped split), plus the
    weights, gradients, optimiser state and evaluation chunks, which grow with the width."""
    width = sum(config["models"][model]["hidden"]) or 10
    return 1000 + (width * 3072 * 4 * 8) // 10**6


def train_runtime(model, cycles):
    """Minutes, with ~3x headroom over the benchmarks (m=50: 20 s, m=500: 4 min for 3 cycles)."""
    width = sum(config["models"][model]["hidden"]) or 10
    return max(5, int(3 * cycles * (0.2 + width / 200)))


def training_runs():
    """metrics.json of every training job this config asks for (the report checks their hashes)."""
    runs = [r for m in config["search"]["models"] for stage in ("coarse", "fine")
            for r in search_runs(stage, m)]
    runs += [r for m in FINAL["models"] for r in final_runs(m)]
    if ABL:
        runs += [r for r in ablation_runs() if r not in runs]
    return runs + aug_lambda_runs()
