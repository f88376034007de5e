"""Stale temp files: what a kill -9 leaves beside a target is removed once its process is gone."""
import os

import pytest

import faults
from handbackprop.atomic import pid_alive, remove_stale_temps, sweep_stale_temps, write_json


def _temps(d):
    """Names of hidden temp files in directory d."""
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name)


def test_dead_pid_temp_removed_live_pid_temp_kept(tmp_path):
    dest = tmp_path / "metrics.json"
    dead = faults.dead_pid()
    assert not pid_alive(dead) and pid_alive(os.getpid())
    stale = tmp_path / f".metrics.json.tmp-{dead}"
    live = tmp_path / f".metrics.json.tmp-{os.getpid()}"
    other_target = tmp_path / f".history.json.tmp-{dead}"   # not dest's: left alone
    not_ours = tmp_path / ".metrics.json.tmp-abc"             # not a pid suffix: left alone
    for p in (stale, live, other_target, not_ours):
        p.write_text("partial")
    assert remove_stale_temps(dest) == [stale]
    assert _temps(tmp_path) == sorted([live.name, other_target.name, not_ours.name])
    assert remove_stale_temps(tmp_path / "absent" / "x.json") == []  # missing folder: nothing


def test_kill_9_leaves_a_temp_that_the_next_write_removes(tmp_path):
    dest = tmp_path / "run" / "metrics.json"
    pid = faults.killed_writer(dest)
    leftover = dest.with_name(f".metrics.json.tmp-{pid}")
    assert leftover.read_bytes() == b"partial" and not dest.exists()  # the fault, reproduced
    write_json(dest, {"ok": 1})
    assert _temps(dest.parent) == [] and dest.exists()


def test_sweep_removes_stale_temps_of_every_target(tmp_path):
    dead = faults.dead_pid()
    stale = [tmp_path / "a" / f".x.npy.tmp-{dead}", tmp_path / "a" / "b" / f".y.json.tmp-{dead}"]
    live = tmp_path / "a" / f".z.json.tmp-{os.getpid()}"
    for p in (*stale, live):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("partial")
    assert sweep_stale_temps(tmp_path) == sorted(stale)
    assert live.exists() and not any(p.exists() for p in stale)


@pytest.mark.parametrize("pid", [0, -1])
def test_non_process_ids_count_as_alive(pid):
    """Never delete on a pid that names no single process (0 and -1 address groups)."""
    assert pid_alive(pid)
