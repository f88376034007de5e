"""A bad config stops the run before any job starts, with a message naming the key."""
import pytest
import yaml

from conftest import QUICK, REPO, snakemake

BAD = {
    "unknown key": ({"search": {"coarse": {"l_mni": -5}}}, "l_mni"),
    "wrong type": ({"final": {"cycles": "three"}}, "cycles"),
    "out of range": ({"data": {"splits": {"search": {"n_val": 0, "seed": 1}}}}, "n_val"),
    "bad md5": ({"data": {"md5": "not-an-md5"}}, "md5"),
    "unknown dtype": ({"dtype": "float16"}, "dtype"),
    "unknown model in search": ({"search": {"models": ["linear", "resnet"]}}, "search.models"),
    "empty coarse range": ({"search": {"coarse": {"l_min": -1, "l_max": -3}}}, "search.coarse"),
    "dropout of 1": ({"models": {"mlp50": {"hidden": [50], "dropout": 1.0}}}, "dropout"),
    # Valid alone, not together (handbackprop/study/plan.py): refused before any job starts.
    "batch larger than the training rows": ({"training": {"batch_size": 1000}}, "training.batch_size"),
    "eta_min above eta_max": ({"training": {"eta_min": 0.5}}, "training.eta_min"),
    "n_val of every image": ({"data": {"splits": {"search": {"n_val": 600, "seed": 1}}}},
                             "data.splits.search.n_val"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_refused_naming_the_key(tmp_path, case):
    overlay, key = BAD[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    proc = snakemake(tmp_path, "-n", configfiles=(QUICK, bad), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert key in out, out[-3000:]
    assert "rule " not in out  # refused before any job was planned
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("configs", [(), (QUICK,)], ids=["default", "quick"])
def test_dry_run_succeeds(tmp_path, configs):
    proc = snakemake(tmp_path, "-n", configfiles=configs or (REPO / "config.yaml",))
    # The searches' tables are checkpoints: a fresh dry run plans up to them, the rest after
    # (the aug-vs-λ grid too: it is centred on its model's searched λ).
    out = proc.stdout + proc.stderr
    assert "coarse_run" in out and "search_table" in out and "preprocess_search" in out


def test_every_config_key_is_documented_by_the_schema():
    """config.yaml itself validates (so the schema has no stale required keys)."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))


def test_without_internet_the_console_ends_naming_the_url_and_the_local_copy_fix(tmp_path):
    """The official URL is unreachable here (no DNS): the console ends (before Snakemake's own
    closing lines) with one line saying so and how to point data.url at a local copy, instead of
    only "Error in rule download"."""
    import socket

    try:
        socket.getaddrinfo("www.cs.toronto.edu", 443)
        pytest.skip("this machine reaches the internet")
    except OSError:
        pass
    overlay = tmp_path / "offline.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"retries": 0, "timeout_s": 5}}))
    proc = snakemake(tmp_path, "--until", "download", configfiles=(REPO / "config.yaml", overlay),
                     check=False)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    exiting = max(i for i, ln in enumerate(lines) if ln.startswith("Exiting because a job execution failed"))
    after = [ln for ln in lines[exiting + 1:] if ln.startswith("download:")]
    assert len(after) == 1, lines[exiting:]
    assert "official CIFAR-10 URL" in after[0] and "unreachable" in after[0] and "data.url" in after[0]
