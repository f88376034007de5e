# Paths and target lists. What the config means (cross-field checks, run specs, lam grids,
# ablation variants, resource sizing) lives in the tested package: handbackprop/study/plan.py.
import json
import os
import sys
import time
from pathlib import Path

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError
from snakemake.utils import validate

ROOT = Path(workflow.basedir)
sys.path.insert(0, str(ROOT))  # this checkout's package, the one the gates verify

from handbackprop import atomic, script_code  # noqa: E402
from handbackprop.runfiles import read_json  # noqa: E402
from handbackprop import stage  # noqa: E402
from handbackprop.study import plan  # noqa: E402
from handbackprop.study.kinds import TRAINING_RULES  # noqa: E402

validate(config, schema=str(ROOT / "workflow/schemas/config.schema.yaml"))
plan.validate(config)
# `--config replicate=1`: the same study on fresh seeds throughout, in {results}/replicate1
config.update(plan.with_replicate(config))


R = config["results"]
THREADS = config["threads"]
FINAL = config["final"]
BONUS = config.get("bonus", {})
ABL = BONUS.get("ablation")
RECIPE = BONUS.get("recipe")
RECIPE_JSON = f"{R}/bonus/recipe.json"
INIT = BONUS.get("init_sensitivity")
AVL = BONUS.get("aug_vs_lambda")
SYNTH = config["data"]["synthetic"]
SYNTH_TARBALL = f"{R}/source/cifar-10-synthetic.tar.gz"
SYNTH_MD5 = f"{R}/source/cifar-10-synthetic.tar.gz.md5"


STARTED = time.time()

# One workflow process writes a results folder at a time (Snakemake's own lock is per working
# directory), and temp files that killed jobs left anywhere in it are swept before any job runs.
if workflow.is_main_process and not workflow.dryrun:
    try:
        RESULTS_LOCK = atomic.lock_results(R)
    except atomic.ResultsInUse as busy:
        raise WorkflowError(str(busy)) from None
    atomic.sweep_stale_temps(R)


def print_failures():
    """The console ends with each failed job's cause in one line (the traceback is in its log)."""
    for line in stage.failure_lines(f"{R}/logs", since=STARTED):
        print(line, file=sys.stderr)


# The package files a rule's script can run or read (handbackprop.script_code: its import
# closure), relative to the working directory so a moved project plans nothing: an edit reruns
# exactly the rules whose code runs it, and everything after them.
def run_cores():
    """The cores this invocation can use: its --cores, at most this machine's (None where it sets
    none, as on a cluster executor). The report spreads the study's GEMM floor over them.
    """
    try:
        return min(workflow.cores, os.cpu_count() or workflow.cores)
    except WorkflowError:
        return None


def code_of(script):
    return [
        os.path.relpath(p)
        for p in script_code(ROOT / "workflow/scripts" / f"{script}.py")
    ]


GATE_EVIDENCE = [f"{R}/gates/{g}.json" for g in ("gradcheck", "overfit", "trajectory")]
STACKED_GATE = f"{R}/gates/stacked.json"


# A user's model (models.<m>.module, study/user_model.py) is trained by the same code, so it
# needs the study's gates, and its own: gate_user_model's verdict on its module.
def is_user_model(model):
    return bool(config["models"][model].get("module"))


def gate_evidence(model):
    """The gate files a training job of `model` requires."""
    own = [f"{R}/gates/user/{model}.json"] if is_user_model(model) else []
    return GATE_EVIDENCE + own


def stack_gate_evidence(model):
    """The gate files a stage job of `model` requires: a job that trains its λ as a stack
    (search_stack, aug_lambda_stack) runs the stacked path, which the stacked gate proves.
    """
    return gate_evidence(model) + [STACKED_GATE]


def user_module(model):
    """The user model's module file (an input of its gate and runs); [] for a built-in model."""
    if not is_user_model(model):
        return []
    from handbackprop.study.user_model import module_file

    return [os.path.relpath(module_file(config["models"][model]["module"]))]


def user_gate_targets():
    models = dict.fromkeys(config["search"]["models"] + FINAL["models"])
    return [f"{R}/gates/user/{m}.json" for m in models if is_user_model(m)]


wildcard_constraints:
    split="search|final",
    stage="coarse|fine",
    model="[A-Za-z0-9_]+",
    lam=r"lam_[0-9.]+e[-+][0-9]+",
    seed=r"\d+",


# ------------------------------------------------------------------------------ data
def split_stats(split):
    return f"{R}/data/{split}/stats.json"


def split_files(split):
    """The arrays of a split folder; the search split has no test arrays, so no job that
    chooses (searches, recipe runs, range tests, gates) can read test rows."""
    from handbackprop.data.splits import split_files as names

    return [
        f"{R}/data/{split}/{name}"
        for name in names(with_test=split == "final")
        if name != "stats.json"
    ]


def download_inputs(wildcards):
    if SYNTH:
        return {"source": SYNTH_TARBALL, "md5_file": SYNTH_MD5}
    return (
        {"md5_file": config["data"]["md5_file"]} if config["data"]["md5_file"] else {}
    )


# ------------------------------------------------------------------------- searches
# A search run lives in {R}/search/{model}/{stage}/lam_1.93e-03/seed{seed}/, trained by one job
# per (stage, seed) with the stage's other λ: search.seeds, or search.per_model.<model>.seeds. The coarse grid comes from the config;
# the fine grid is written by the coarse table (a checkpoint), and the final lam by the fine
# table, so every training job gets a plain float.
def table_path(model, stage):
    return f"{R}/search/{model}/{stage}.json"


def search_grid(model, stage):
    """{folder label: lam} of one search; the fine grid waits for the coarse table."""
    if stage == "coarse":
        return plan.coarse_grid(config, model)
    path = checkpoints.search_table.get(model=model, stage="coarse").output.json
    return read_json(path, "fine_grid")


def search_runs(model, stage, name="metrics.json"):
    seeds = plan.search_settings(config, model)["seeds"]
    return [
        f"{R}/search/{model}/{stage}/{label}/seed{seed}/{name}"
        for label in search_grid(model, stage)
        for seed in seeds
    ]


def search_lam(stage):
    """The lam of a search job, from its folder label."""
    return lambda wildcards: search_grid(wildcards.model, stage)[wildcards.lam]


def search_cycles(stage):
    return lambda wildcards: plan.search_settings(config, wildcards.model)[
        f"{stage}_cycles"
    ]


def final_lam(model):
    """The fine search's best lam (read once the fine table exists); a model with `lam_from`
    takes that model's."""
    return read_json(table_path(plan.lam_model(config, model), "fine"), "final_lam")


# ------------------------------------------------------------------ learning-rate range tests
def range_json(name):
    """The range-test JSON a training job of model (or bonus experiment) `name` reads its η
    from: the model's own, or the experiment's model's (plan.range_model)."""
    return f"{R}/lr_range/{plan.range_model(config, name)}.json"


def eta_input(name):
    """A training job's η input: its range-test JSON when it trains at the test's bounds,
    nothing when config.yaml fixes its eta_max (rerunning the test then leaves it alone).
    """
    model = plan.range_model(config, name)
    return range_json(name) if plan.eta_source(config, model) == "range_test" else []


def range_targets():
    return [f"{R}/lr_range/{m}.json" for m in plan.range_models(config)]


# --------------------------------------------------------------------- final and bonus
def final_runs(model, name="metrics.json"):
    """Every seed's file of one model's final runs, once its fine table has chosen lam."""
    checkpoints.search_table.get(model=plan.lam_model(config, model), stage="fine")
    return [f"{R}/final/{model}/seed{s}/{name}" for s in FINAL["seeds"]]


# The recipe search (bonus.recipe): each candidate recipe of the ablated model at its searched
# lam, on the search split; its table (a checkpoint) chooses the recipe the model's final runs
# and its ablation train with.
def recipe_runs(wildcards=None):
    if not RECIPE:
        return []
    checkpoints.search_table.get(
        model=plan.lam_model(config, ABL["model"]), stage="fine"
    )
    return [
        f"{R}/bonus/recipe/{c}/seed{s}/metrics.json"
        for c in plan.recipe_candidates(config)
        for s in RECIPE["seeds"]
    ]


def recipe_input(model):
    """The chosen recipe, an input of the recipe model's final runs (none for other models)."""
    return [RECIPE_JSON] if RECIPE and model == plan.recipe_model(config) else []


def chosen_recipe():
    """The overrides the recipe table chose ({} without a recipe search)."""
    if not RECIPE:
        return {}
    path = checkpoints.recipe_table.get().output.json
    return read_json(path, "recipe")


def ablation_variants():
    return plan.ablation_variants(config, chosen_recipe())


def ablation_runs(wildcards=None):
    runs = final_runs(ABL["model"])
    runs += [
        f"{R}/bonus/ablation/{v}/seed{s}/metrics.json"
        for v in ablation_variants()
        for s in ABL["seeds"]
    ]
    return runs


def init_runs(wildcards=None):
    """The initialisation-sensitivity runs, once their model's λ is chosen."""
    if not INIT:
        return []
    checkpoints.search_table.get(
        model=plan.lam_model(config, INIT["model"]), stage="fine"
    )
    return [
        f"{R}/bonus/init_sensitivity/{v}/seed{s}/metrics.json"
        for v in plan.init_variants(config)
        for s in INIT["seeds"]
    ]


def aug_lambda_runs(wildcards=None):
    """The aug-vs-λ runs, once their model's λ (the grid's centre) is chosen."""
    if not AVL:
        return []
    checkpoints.search_table.get(
        model=plan.lam_model(config, AVL["model"]), stage="fine"
    )
    return expand(
        f"{R}/bonus/aug_vs_lambda/{{aug}}/{{lam}}/seed{{seed}}/metrics.json",
        aug=["aug", "noaug"],
        lam=list(plan.aug_grid(config, final_lam(AVL["model"]))),
        seed=AVL["seeds"],
    )


def bonus_targets():
    out = [RECIPE_JSON] if RECIPE else []
    if ABL:
        out.append(f"{R}/bonus/ablation.json")
    if AVL:
        out.append(f"{R}/bonus/aug_vs_lambda.json")
    if INIT:
        out.append(f"{R}/bonus/init_sensitivity.json")
    return out


def training_runs(wildcards=None):
    """metrics.json of every training job this config asks for (the report checks each)."""
    runs = [
        r
        for m in config["search"]["models"]
        for stage in ("coarse", "fine")
        for r in search_runs(m, stage)
    ]
    runs += [r for m in FINAL["models"] for r in final_runs(m)]
    runs += recipe_runs()
    if ABL:
        runs += [r for r in ablation_runs() if r not in runs]
    return runs + aug_lambda_runs() + init_runs()


def final_files(name):
    return lambda wildcards: [r for m in FINAL["models"] for r in final_runs(m, name)]


# ------------------------------------------------------------------------- report
SINGLE_JOB_RULES = [
    "download",
    "gate_gradcheck",
    "gate_overfit",
    "gate_trajectory",
    "gate_stacked",
    "gate_bug_table",
]


def training_files(name):
    """One file of every training run this config asks for (beside its metrics.json)."""
    return lambda wildcards: [
        str(Path(r).with_name(name)) for r in training_runs(wildcards)
    ]


# Jobs around the report whose benchmark files count as the report stage of the cost table.
REPORT_BENCHMARK_RULES = ["audit", "machine_gemm"]
MACHINE_GEMM = f"{R}/report/machine_gemm.json"


def plan_shapes():
    """The GEMM shapes of every training run this config asks for (machine_gemm measures them)."""
    from handbackprop.study.roofline import study_shapes

    return study_shapes(config)


def gemm_thread_counts():
    return sorted({1, THREADS["search"], THREADS["final"]})


# The per-λ rules whose runs one job per stage trains (search.smk): that rule, and the wildcards
# its job has beyond the run's own.
STACKED_BY = {
    "coarse_run": ("search_stack", {"stage": "coarse"}),
    "fine_run": ("search_stack", {"stage": "fine"}),
    "aug_lambda_run": ("aug_lambda_stack", {}),
}


def benchmark_files(wildcards):
    """The benchmark file of every job this config asks for, each from its own rule's
    `benchmark:` path (so leftovers of other configs are never read)."""
    out = [str(getattr(rules, r).benchmark) for r in SINGLE_JOB_RULES]
    out += [str(rules.preprocess.benchmark), str(rules.preprocess_search.benchmark)]
    out += expand(str(rules.lr_range.benchmark), model=plan.range_models(config))
    for run in training_runs(wildcards):
        for name in TRAINING_RULES:
            made_by = getattr(rules, name)
            match = made_by.output.metrics.match(run)
            if match:
                found = match.groupdict()
                if (
                    name in STACKED_BY
                ):  # copied out of a stage's job: that job's benchmark
                    stack_rule, fixed = STACKED_BY[name]
                    made_by = getattr(rules, stack_rule)
                    found = {k: v for k, v in found.items() if k != "lam"} | fixed
                out.append(made_by.benchmark.apply_wildcards(found))
                break
        else:
            raise ValueError(f"{run}: made by none of {TRAINING_RULES}")
    out += [str(getattr(rules, r).benchmark) for r in REPORT_BENCHMARK_RULES]
    return list(dict.fromkeys(out))


def selection_files():
    """The tables whose choices the audit recomputes."""
    out = [
        table_path(m, st)
        for m in config["search"]["models"]
        for st in ("coarse", "fine")
    ]
    return out + ([RECIPE_JSON] if RECIPE else [])


def table_targets():
    """Every table, gate and summary file this config asks for, beside its JSON: a deleted CSV
    or Markdown twin is rebuilt by a plain run like any other output."""
    out = [
        f"{R}/gates/{name}"
        for name in (
            "gradcheck.json",
            "gradcheck.md",
            "overfit.json",
            "trajectory.json",
            "stacked.json",
        )
    ]
    out += [f"{R}/gates/bug_table.json", f"{R}/gates/bug_table.csv"]
    out += user_gate_targets()
    out += [
        f"{R}/lr_range/{m}.{ext}"
        for m in plan.range_models(config)
        for ext in ("json", "csv")
    ]
    out += [f"{R}/final/{m}/summary.json" for m in FINAL["models"]]
    out += [
        str(Path(t).with_suffix(ext))
        for t in bonus_targets()
        for ext in (".json", ".csv")
    ]
    out += [MACHINE_GEMM, f"{R}/report/audit.json"]
    return out


def all_targets(wildcards=None):
    """The report, and every file of every job this config asks for: a file deleted after the
    report was built (an interrupted --forcerun, a careless `rm`) is rebuilt by a plain run, and
    what depends on it after it. Each group of runs is resolved on its own: while a checkpoint it
    needs is still to run, that checkpoint's table stands in for it (and Snakemake asks again
    once it has run), so one model's pending search does not hide the others' jobs."""
    groups = [
        lambda m=m, st=st: search_runs(m, st)
        for m in config["search"]["models"]
        for st in ("coarse", "fine")
    ]
    groups += [lambda m=m: final_runs(m, "snapshots.npz") for m in FINAL["models"]]
    groups += [lambda m=m: final_runs(m) for m in FINAL["models"]]
    groups += [recipe_runs]
    groups += [ablation_runs] if ABL else []
    groups += [aug_lambda_runs, init_runs]
    out = [f"{R}/report/report.html", f"{R}/report/report.md", *table_targets()]
    for m in config["search"]["models"]:
        out += [f"{R}/search/{m}/{st}.csv" for st in ("coarse", "fine")]
    for group in groups:
        try:
            runs = group()
        except IncompleteCheckpointException as pending:
            out.append(pending.targetfile)
            continue
        names = ("metrics.json", "history.csv", "weights.npz")
        out += [
            str(Path(r).with_name(n))
            for r in runs
            for n in names
            if r.endswith(".json")
        ]
        out += [r for r in runs if r.endswith(".npz")]
    return list(dict.fromkeys(out))
