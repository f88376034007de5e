"""What config.yaml means for the study, without Snakemake: checks across fields, the spec of
every training run, search settings, the lam grids, ablation variants and resource sizing.

`workflow/rules/common.smk` turns these into paths and target lists; everything that decides a
value lives here, with unit tests (tests/study/test_plan.py). The JSON schema
(workflow/schemas/config.schema.yaml) checks each value alone; `validate` checks how they fit
together, before any job starts, and names the key at fault.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple

from . import grids

TRAIN_KEYS = {"batch_size", "eta_min", "eta_max", "n_s", "points_per_cycle", "train_eval_size",
              "divergence_factor", "optimizer", "momentum", "flip", "max_shift"}
# Model-entry keys a recipe candidate may change besides the training keys.
RECIPE_KEYS = {"hidden", "dropout", "n_s_epochs", "batch_norm", "init"}
CIFAR_TRAIN_IMAGES = 50_000  # the official training batches; the test batch is never split
N_CLASSES = 10


class ConfigError(ValueError):
    """A configuration whose values are valid alone but not together; names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config error at {key}: {problem}")
        self.key = key


# ----------------------------------------------------------------------- replicates
REPLICATE_STRIDE = 1000  # replicate r trains seed s as s + 1000·r: never a seed of another replicate


def with_replicate(config: dict) -> dict:
    """The config of independent replicate `replicate` (0: the study as configured): every seed
    that shapes a training run or a choice is moved to another stream — the search, final,
    recipe and bonus seeds, the range tests' seed and the coarse grid's draw — so the whole
    pipeline, λ choices included, is rerun on fresh randomness; the data splits and the gates
    stay as they are (the test set is the same for every replicate). Results go to
    `{results}/replicate{r}`, so replicates sit beside each other and compare
    (`python -m handbackprop.study.compare`)."""
    r = int(config.get("replicate", 0) or 0)
    if r == 0:
        return config
    out = copy.deepcopy(config)
    shift = lambda seeds: [int(s) + REPLICATE_STRIDE * r for s in seeds]  # noqa: E731
    out["results"] = f"{config['results']}/replicate{r}"
    out["search"]["seeds"] = shift(config["search"]["seeds"])
    for entry in out["search"].get("per_model", {}).values():
        if "seeds" in entry:
            entry["seeds"] = shift(entry["seeds"])
    out["search"]["coarse"]["seed"] = int(config["search"]["coarse"]["seed"]) + REPLICATE_STRIDE * r
    out["final"]["seeds"] = shift(config["final"]["seeds"])
    out["lr_range"]["seed"] = int(config["lr_range"]["seed"]) + REPLICATE_STRIDE * r
    for name, exp in (out.get("bonus") or {}).items():
        if isinstance(exp, dict) and "seeds" in exp:
            exp["seeds"] = shift(exp["seeds"])
    return out


# ------------------------------------------------------------------------- training specs
def model_spec(config: dict, model: str, **overrides) -> dict:
    """The training defaults with the model's own settings, then `overrides`, on top.

    A model whose η comes from its range test (eta_source "range_test") gets no eta_min/eta_max
    here: the job takes them from the test's JSON (resolve.with_eta), so the training
    defaults' η, which it never uses, is not in its params and changing it reruns nothing."""
    spec = {**config["training"], **config["models"][model], **overrides}
    spec.setdefault("dropout", 0.0)
    if eta_source(config, model) == "range_test" and "eta_max" not in overrides:
        spec.pop("eta_min", None)
        spec.pop("eta_max", None)
    # sorted: a profile that merges a key into config.yaml moves it in the dict, and Snakemake
    # compares params in order; the same settings must be the same params
    return dict(sorted(spec.items()))


def spec_key(config: dict, model: str, name: str) -> str:
    """Where a spec value comes from: the model's own entry, or the training defaults."""
    return f"models.{model}.{name}" if name in config["models"][model] else f"training.{name}"


def step_size(spec: dict, n_train: int) -> int:
    """n_s in steps: `n_s_epochs` epochs, else `n_s`, else two epochs (Smith's 2-8 epochs)."""
    batches = n_train // int(spec.get("batch_size", 100))
    if spec.get("n_s_epochs"):
        return int(spec["n_s_epochs"]) * batches
    return int(spec["n_s"]) if spec.get("n_s") else 2 * batches


def source_train_images(config: dict) -> int:
    """Training images in the source tarball (before a split takes its validation rows)."""
    synth = config["data"].get("synthetic")
    return N_CLASSES * synth["per_class_train"] if synth else CIFAR_TRAIN_IMAGES


def train_rows(config: dict, split: str) -> int:
    return source_train_images(config) - config["data"]["splits"][split]["n_val"]


def search_settings(config: dict, model: str) -> dict:
    """One model's search: grid sizes, cycles and the seeds every λ point runs with (each
    (λ, seed) its own job), the model's `search.per_model` entry over the defaults."""
    per = config["search"]["per_model"].get(model, {})
    return {
        "n_coarse": per.get("n_coarse", config["search"]["coarse"]["n"]),
        "n_fine": per.get("n_fine", config["search"]["fine"]["n"]),
        "coarse_cycles": per.get("cycles", config["search"]["coarse"]["cycles"]),
        "fine_cycles": per.get("cycles", config["search"]["fine"]["cycles"]),
        "seeds": list(per.get("seeds", config["search"]["seeds"])),
    }


# Each improvement of the bonus recipe and the setting that switches it off.
ABLATION_SWITCHES = {
    "no_width": {"hidden": [50]},
    "no_dropout": {"dropout": 0.0},
    "no_augmentation": {"flip": False, "max_shift": 0},
    "no_momentum": {"optimizer": "sgd"},
}


def _improvements_on(spec: dict) -> list[str]:
    """The ablation switches that change `spec` (an improvement it does not use is not ablated)."""
    on = {
        "no_width": max(spec.get("hidden") or [0]) > 50,
        "no_dropout": spec.get("dropout", 0.0) > 0,
        "no_augmentation": bool(spec.get("flip") or spec.get("max_shift")),
        "no_momentum": spec.get("optimizer", "sgd") != "sgd",
    }
    return [name for name in ABLATION_SWITCHES if on[name]]


def ablation_variants(config: dict, recipe: dict | None = None) -> dict[str, dict]:
    """Each improvement of the ablated model switched off in turn, and all off together;
    'all' (every improvement on) is the model's final runs themselves. `recipe`: the overrides
    the recipe search chose (bonus.recipe), applied before the switches; without it, the
    model's configured entry."""
    abl = config.get("bonus", {}).get("ablation")
    if not abl:
        return {}
    spec = {**config["models"][abl["model"]], **(recipe or {})}
    variants = {name: dict(ABLATION_SWITCHES[name]) for name in _improvements_on(spec)}
    all_off = {}
    for v in variants.values():
        all_off.update(v)
    variants["all_off"] = all_off
    return variants


def recipe_candidates(config: dict) -> dict[str, dict]:
    """{candidate: overrides on the recipe model's entry} screened by the recipe search;
    'configured' is the entry itself, always a candidate."""
    rec = config.get("bonus", {}).get("recipe")
    if not rec:
        return {}
    return {"configured": {}, **configured_candidates(rec)}


def configured_candidates(recipe: dict) -> dict[str, dict]:
    """bonus.recipe.candidates as {name: overrides}. The config gives a list of
    {name, overrides...}: a list, because Snakemake merges a profile's dicts into config.yaml's
    (the quick profile's one candidate would join the default's four) but replaces lists."""
    out = {}
    for i, entry in enumerate(recipe["candidates"]):
        over = dict(entry)
        name = over.pop("name", None)
        if not name:
            raise ConfigError(f"bonus.recipe.candidates[{i}]", "each candidate needs a `name`")
        if name in out:
            raise ConfigError(f"bonus.recipe.candidates.{name}", "two candidates share this name")
        out[name] = over
    return out


def recipe_model(config: dict) -> str | None:
    """The model whose recipe is chosen by the recipe search (the ablated model)."""
    rec = config.get("bonus", {}).get("recipe")
    abl = config.get("bonus", {}).get("ablation")
    return (abl or {}).get("model") if rec else None


def lam_model(config: dict, model: str) -> str:
    """The model whose fine search gives `model` its λ: itself, or its `lam_from` (a final-only
    comparison such as deep9 without batch norm, trained at deep9's λ)."""
    return config["models"][model].get("lam_from", model)


def init_variants(config: dict) -> dict[str, dict]:
    """The initialisation-sensitivity runs: every weight N(0, σ²), with and without batch norm.
    {variant: spec overrides}, variant like ``bn_sigma_1e-04``."""
    exp = config.get("bonus", {}).get("init_sensitivity")
    if not exp:
        return {}
    return {f"{'bn' if bn else 'nobn'}_sigma_{sigma:.0e}": {"batch_norm": bn, "init": float(sigma)}
            for bn in (True, False) for sigma in exp["sigmas"]}


def aug_spec(config: dict, aug: str) -> dict:
    """The aug-vs-lam experiment's spec with augmentation on ('aug') or off ('noaug')."""
    avl = config["bonus"]["aug_vs_lambda"]
    on = aug == "aug"
    return model_spec(config, avl["model"], flip=avl["flip"] if on else False,
                      max_shift=avl["max_shift"] if on else 0)


def selection_plan(config: dict) -> dict:
    """What the audit needs to recompute every choice of this config from its runs
    (handbackprop/audit/selections.py): plain data, so it can be a rule's params."""
    final = config["final"]
    bonus = config.get("bonus") or {}
    out = {
        "searches": {m: {"coarse_grid": coarse_grid(config, m),
                         "fine": fine_grid_settings(config, m),
                         "seeds": search_settings(config, m)["seeds"]}
                     for m in config["search"]["models"]},
        "finals": {m: {"lam_model": lam_model(config, m), "seeds": final["seeds"]}
                   for m in final["models"]},
    }
    if bonus.get("recipe"):
        out["recipe"] = {"candidates": recipe_candidates(config), "seeds": bonus["recipe"]["seeds"]}
    if bonus.get("ablation"):
        abl = bonus["ablation"]
        out["ablation"] = {"seeds": abl["seeds"]}
        # only what ablation_variants reads, so other config changes do not rerun the audit
        out["config"] = {"bonus": {"ablation": abl}, "models": {abl["model"]: config["models"][abl["model"]]}}
    return out


# ---------------------------------------------------------------------------- lam grids
def coarse_grid(config: dict, model: str) -> dict[str, float]:
    """{folder label: lam} of one model's coarse search."""
    c = config["search"]["coarse"]
    exps = grids.coarse_exponents(c["l_min"], c["l_max"], search_settings(config, model)["n_coarse"],
                                  c["sampling"], c["seed"])
    return grids.lam_labels([10.0 ** e for e in exps])


def fine_grid_settings(config: dict, model: str) -> dict:
    """What the coarse table needs to write the fine grid it implies."""
    c, f = config["search"]["coarse"], config["search"]["fine"]
    return {"n": search_settings(config, model)["n_fine"], "half_width": f["half_width"],
            "l_min": c["l_min"], "l_max": c["l_max"]}


def aug_grid(config: dict, centre_lam: float) -> dict[str, float]:
    """{folder label: lam} of the aug-vs-lam experiment: its `offsets` (log10) around
    `centre_lam`, the model's own searched λ, so the grid brackets the optimum it measures."""
    centre = math.log10(centre_lam)
    return grids.lam_labels([10.0 ** (centre + o) for o in config["bonus"]["aug_vs_lambda"]["offsets"]])


# ---------------------------------------------------------------------------- resources
def train_mem_mb(config: dict, model: str) -> int:
    """Measured on the real data: ~700 MB resident (mostly the memory-mapped split), plus the
    weights, gradients, optimiser state and evaluation chunks, which grow with the width."""
    width = sum(config["models"][model].get("hidden") or []) or 10  # a user model: as linear
    return 1000 + (width * 3072 * 4 * 8) // 10**6


def stack_mem_mb(config: dict, model: str, k: int) -> int:
    """A job training k runs of `model` as one stack: the split once, the runs' arrays k times."""
    return train_mem_mb(config, model) + (k - 1) * (train_mem_mb(config, model) - 1000)


def train_runtime(config: dict, model: str, cycles: int) -> int:
    """Minutes, with ~3x headroom over the benchmarks (m=50: 20 s, m=500: 4 min for 3 cycles)."""
    width = sum(config["models"][model].get("hidden") or []) or 10
    return max(5, int(3 * cycles * (0.2 + width / 200)))


def bug_table_settings(config: dict) -> dict:
    """The planted-bug table's gates: the configured gates on smaller budgets."""
    g, b = config["gates"], config["gates"]["bug_table"]
    return {
        "gradcheck": {**g["gradcheck"], "n_images": b["n_images"], "fd_coords": 5},
        "overfit": {**g["overfit"], "steps": b["overfit_steps"],
                    "variants": {"two_layer": {"hidden": [50]}}},
        "trajectory": {**g["trajectory"],
                       "variants": {k: v for k, v in g["trajectory"]["variants"].items()
                                    if v.get("optimizer", "sgd") == "sgd"}},
        # float64 only: under a bug that destabilises training, float32's rounding difference
        # between stack and single run grows past its tolerance, a "catch" of rounding
        "stacked": {**g["stacked"],
                    "variants": {k: v for k, v in g["stacked"]["variants"].items()
                                 if v.get("dtype", "float64") == "float64"}},
    }


# ---------------------------------------------------------------------------- validation
class TrainingUse(NamedTuple):
    """One kind of training run a config asks for, with where its settings come from."""
    where: str            # how the report and errors name it, e.g. "bonus.recipe (dropout_0.3)"
    split: str            # the split it trains on
    spec: dict            # its resolved settings
    model: str            # the model entry it starts from
    overrides_key: str | None = None   # the config key of its own overrides, if any
    overrides: dict | None = None


def training_uses(config: dict) -> list[TrainingUse]:
    """Every kind of training run this config asks for."""
    uses = [TrainingUse(f"search.models ({m})", "search", model_spec(config, m), m)
            for m in config["search"]["models"]]
    uses += [TrainingUse(f"final.models ({m})", "final", model_spec(config, m), m)
             for m in config["final"]["models"]]
    bonus = config.get("bonus", {})
    if bonus.get("ablation"):
        m = bonus["ablation"]["model"]
        uses += [TrainingUse(f"bonus.ablation ({v})", "final", model_spec(config, m, **o), m)
                 for v, o in ablation_variants(config).items()]
    if bonus.get("recipe"):
        m = recipe_model(config)
        uses += [TrainingUse(f"bonus.recipe ({c})", "search", model_spec(config, m, **o), m,
                             f"bonus.recipe.candidates.{c}" if c != "configured" else None, o)
                 for c, o in recipe_candidates(config).items()]
    if bonus.get("aug_vs_lambda"):
        uses.append(TrainingUse("bonus.aug_vs_lambda", "search", aug_spec(config, "aug"),
                                bonus["aug_vs_lambda"]["model"]))
    if bonus.get("init_sensitivity"):
        m = bonus["init_sensitivity"]["model"]
        uses += [TrainingUse(f"bonus.init_sensitivity ({v})", "final", model_spec(config, m, **o), m)
                 for v, o in init_variants(config).items()]
    return uses


def use_key(config: dict, use: TrainingUse, name: str) -> str:
    """The config key that sets `name` for this use: its own overrides' key (a recipe
    candidate's value is reported under the candidate), else the model's or the default's."""
    if use.overrides_key and name in (use.overrides or {}):
        return f"{use.overrides_key}.{name}"
    return spec_key(config, use.model, name)


def validate(config: dict) -> None:
    """Raise ConfigError naming the first key whose value does not fit the others."""
    models = config["models"]
    for m in models:
        eta_source(config, m)  # eta_max: a number or range_test
    for key in ("search", "final"):
        for m in config[key]["models"]:
            if m not in models:
                raise ConfigError(f"{key}.models", f"unknown model {m!r}; defined: {sorted(models)}")
    for m in config["final"]["models"]:
        source = lam_model(config, m)
        if source not in models:
            raise ConfigError(f"models.{m}.lam_from", f"unknown model {source!r}")
        if source not in config["search"]["models"]:
            raise ConfigError("final.models", f"{m!r} needs a λ search: add "
                              f"{source!r} to search.models" + (f" (its lam_from)" if source != m else ""))
    for m, spec in models.items():
        if spec.get("batch_norm") and not spec.get("hidden"):
            raise ConfigError(f"models.{m}.batch_norm", "batch norm needs a hidden layer")
    for m in config["final"]["ensemble"]:
        if m not in config["final"]["models"]:
            raise ConfigError("final.ensemble", f"{m!r} is not in final.models")
    c = config["search"]["coarse"]
    if not c["l_min"] < c["l_max"]:
        raise ConfigError("search.coarse", "l_min must be below l_max")
    for m in config["search"]["per_model"]:
        if m not in models:
            raise ConfigError("search.per_model", f"unknown model {m!r}")
    bonus = config.get("bonus", {})
    avl = bonus.get("aug_vs_lambda")
    if avl and avl["fit_points"] > len(avl["offsets"]):
        raise ConfigError("bonus.aug_vs_lambda.fit_points",
                          f"a quadratic over {avl['fit_points']} points needs at least that many "
                          f"offsets; there are {len(avl['offsets'])}")
    for name in ("ablation", "aug_vs_lambda", "init_sensitivity"):
        if bonus.get(name) and bonus[name]["model"] not in models:
            raise ConfigError(f"bonus.{name}.model", f"unknown model {bonus[name]['model']!r}")
    if bonus.get("init_sensitivity") and bonus["init_sensitivity"]["model"] not in config["final"]["models"]:
        raise ConfigError("bonus.init_sensitivity.model",
                          "the experiment trains at the model's final λ (add it to final.models)")
    if bonus.get("init_sensitivity") and not models[bonus["init_sensitivity"]["model"]].get("hidden"):
        raise ConfigError("bonus.init_sensitivity.model", "batch norm needs a hidden layer")
    if bonus.get("recipe"):
        if not bonus.get("ablation"):
            raise ConfigError("bonus.recipe", "the recipe search chooses the ablated model's recipe: "
                              "set bonus.ablation too")
        for name, over in configured_candidates(bonus["recipe"]).items():
            unknown = set(over) - TRAIN_KEYS - RECIPE_KEYS
            if unknown:
                raise ConfigError(f"bonus.recipe.candidates.{name}",
                                  f"unknown setting(s) {sorted(unknown)}; a candidate may set "
                                  f"{sorted(TRAIN_KEYS | RECIPE_KEYS)}")
            if name == "configured":
                raise ConfigError(f"bonus.recipe.candidates.{name}",
                                  "'configured' is the model's own entry, always screened")
    if bonus.get("ablation") and bonus["ablation"]["model"] not in config["final"]["models"]:
        raise ConfigError("bonus.ablation.model",
                          "the ablated model needs its final runs (add it to final.models)")

    total = source_train_images(config)
    for split, s in config["data"]["splits"].items():
        if s["n_val"] >= total:
            raise ConfigError(f"data.splits.{split}.n_val",
                              f"{s['n_val']} validation images leave none of the {total} training "
                              f"images to train on")
    defaults = config["training"]
    if "eta_max" in defaults and defaults["eta_min"] > defaults["eta_max"]:
        # checked on their own: a range-test model never uses them, and every other model
        # that does would otherwise be blamed under its own key
        raise ConfigError("training.eta_min", f"eta_min {defaults['eta_min']:g} is above the "
                          f"default eta_max {defaults['eta_max']:g}")
    for use in training_uses(config):
        spec, split, where = use.spec, use.split, use.where
        n = train_rows(config, split)
        if spec["batch_size"] > n:
            raise ConfigError(use_key(config, use, "batch_size"),
                              f"batch of {spec['batch_size']} is larger than the {n} training rows "
                              f"of the {split} split ({where})")
        if step_size(spec, n) < 1:
            raise ConfigError(use_key(config, use, "n_s_epochs" if spec.get("n_s_epochs") else "n_s"),
                              f"the half-cycle n_s would be 0 steps for {where}")
        if "eta_max" in spec and spec["eta_min"] > spec["eta_max"]:
            own = "eta_max" if "eta_max" in {**config["models"][use.model], **(use.overrides or {})} else "eta_min"
            raise ConfigError(use_key(config, use, own),
                              f"eta_min {spec['eta_min']:g} is above eta_max {spec['eta_max']:g} "
                              f"({where})")
    validate_lr_range(config)
    from . import user_model  # a user's module (models.<m>.module): file, class, contract

    user_model.validate(config)


# ----------------------------------------------------------------- learning-rate range test
RANGE_KEYS = ("epochs", "eta_low", "eta_high", "record_every", "val_rows", "lam", "smooth",
              "max_fraction", "min_fraction", "divergence_factor", "ema_beta", "seed")
BONUS_EXPERIMENTS = ("ablation", "aug_vs_lambda", "init_sensitivity")


RANGE_TEST = "range_test"
ETA_SOURCES = (RANGE_TEST, "config")  # where a run's η_min/η_max come from


def eta_source(config: dict, model: str) -> str:
    """Where a model's η_min/η_max come from, the value of its `eta_max`: the string
    `range_test` (also when the key is absent, the default) → "range_test", its learning-rate
    range test, which also sets η_min; a positive number → "config", fixed there (with the
    training defaults' eta_min unless the model sets its own)."""
    value = config["models"][model].get("eta_max", RANGE_TEST)
    if value == RANGE_TEST:
        return RANGE_TEST
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"models.{model}.eta_max",
                          f"must be a positive number or '{RANGE_TEST}', got {value!r}")
    return "config"


def range_model(config: dict, name: str) -> str:
    """The model whose range test a training job uses: a model is its own (deep9_nobn too,
    although it takes deep9's λ); a bonus experiment (ablation, aug_vs_lambda,
    init_sensitivity) uses its `model`'s."""
    if name in config["models"]:
        return name
    if name in BONUS_EXPERIMENTS and (config.get("bonus") or {}).get(name):
        return config["bonus"][name]["model"]
    raise ConfigError("lr_range", f"{name!r} is neither a model nor a configured bonus experiment")


def range_models(config: dict) -> list[str]:
    """Every model with a range test: the searched, the final and the bonus experiments' models."""
    out = list(config["search"]["models"]) + list(config["final"]["models"])
    bonus = config.get("bonus") or {}
    out += [bonus[name]["model"] for name in BONUS_EXPERIMENTS if bonus.get(name)]
    # a user model fixes its eta_max: the range test builds the study's own networks only
    return [m for m in dict.fromkeys(out) if not config["models"][m].get("module")]


def range_settings(config: dict, model: str) -> dict:
    """One model's range test: `lr_range`'s keys with its `lr_range.per_model.<model>` entry on top."""
    lr = config["lr_range"]
    return {**{k: lr[k] for k in RANGE_KEYS}, **lr.get("per_model", {}).get(model, {})}


def range_spec(config: dict, model: str) -> dict:
    """The model's spec as its range test uses it: without eta_min/eta_max, which the test
    replaces (so changing them does not rerun the test)."""
    return {k: v for k, v in model_spec(config, model).items() if k not in ("eta_min", "eta_max")}


def range_steps(settings: dict, n_train: int, batch_size: int) -> int:
    """Update steps of a range test: `epochs` passes, the last batch of each possibly short."""
    return int(settings["epochs"]) * -(-int(n_train) // int(batch_size))


def validate_lr_range(config: dict) -> None:
    """The range-test section's values together; ConfigError names the key (per-model keys as
    lr_range.per_model.<model>.<key>)."""
    lr = config.get("lr_range")
    if not lr:
        return
    for m in lr.get("per_model", {}):
        if m not in config["models"]:
            raise ConfigError("lr_range.per_model", f"unknown model {m!r}")
    for m in range_models(config):
        s = range_settings(config, m)

        def key(k, m=m):
            return f"lr_range.per_model.{m}.{k}" if k in lr.get("per_model", {}).get(m, {}) else f"lr_range.{k}"

        if not 0 < s["eta_low"] < s["eta_high"]:
            own = lr.get("per_model", {}).get(m, {})
            bad = "eta_high" if "eta_high" in own and "eta_low" not in own else "eta_low"
            raise ConfigError(key(bad), f"need 0 < eta_low < eta_high; got eta_low {s['eta_low']:g}, "
                                        f"eta_high {s['eta_high']:g} ({m})")
        for k in ("max_fraction", "min_fraction"):
            if not 0 < s[k] <= 1:
                raise ConfigError(key(k), f"a fraction in (0, 1] is needed, got {s[k]:g} ({m})")
        if not 0 <= s["ema_beta"] < 1:
            raise ConfigError(key("ema_beta"), f"the loss EMA's β must be in [0, 1), got {s['ema_beta']:g} ({m})")
        if not s["divergence_factor"] > 1:
            raise ConfigError(key("divergence_factor"),
                              f"must exceed 1 (a multiple of the smallest smoothed loss), got {s['divergence_factor']:g}")
        for k in ("epochs", "record_every", "val_rows", "smooth"):
            if int(s[k]) < 1:
                raise ConfigError(key(k), f"must be at least 1, got {s[k]} ({m})")
        if s["lam"] < 0:
            raise ConfigError(key("lam"), f"λ must be >= 0, got {s['lam']:g}")
        steps = range_steps(s, train_rows(config, "search"), model_spec(config, m)["batch_size"])
        if steps // int(s["record_every"]) < int(s["smooth"]):
            raise ConfigError(key("record_every"),
                              f"{steps} steps recorded every {s['record_every']} give fewer than "
                              f"smooth = {s['smooth']} records to average ({m})")
