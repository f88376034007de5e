"""Tests for handbackprop.data.download: success paths, each failure mode, and clean-up."""
import gzip
import hashlib
import io
import tarfile

import pytest

from handbackprop.data.download import DownloadError, fetch, read_md5_file

FAST = {"retries": 2, "backoff_s": 0.01, "timeout_s": 5, "log": lambda msg: None}


def _md5(data):
    """Hex md5 of bytes."""
    return hashlib.md5(data).hexdigest()


def _assert_clean(dest):
    """Nothing at dest and no temp files left beside it."""
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if ".tmp-" in p.name] == []


@pytest.fixture
def tarball_bytes(synthetic_tarball):
    """(bytes, md5) of the session's synthetic tarball."""
    path, md5 = synthetic_tarball
    return path.read_bytes(), md5


def test_http_success_returns_provenance(http_server, tarball_bytes, tmp_path):
    body, md5 = tarball_bytes
    url = http_server.route("/c.tar.gz", body=body)
    dest = tmp_path / "out" / "c.tar.gz"
    prov = fetch(url, dest, md5, **FAST)
    assert dest.read_bytes() == body
    assert prov["md5"] == md5 and prov["bytes"] == len(body)
    assert prov["attempts"] == 1 and prov["url"] == url and prov["md5_verified"] is True
    assert prov["seconds"] >= 0
    _assert_clean(dest.with_name("absent"))  # no temp files beside the real output


def test_checksum_mismatch_names_both_digests(http_server, tarball_bytes, tmp_path):
    body, md5 = tarball_bytes
    url = http_server.route("/c.tar.gz", body=body)
    wrong = "0" * 32
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError) as err:
        fetch(url, dest, wrong, **FAST)
    assert wrong in str(err.value) and md5 in str(err.value)
    assert http_server.count("/c.tar.gz") == 1  # a bad checksum is not retried
    _assert_clean(dest)


def test_404_is_not_retried(http_server, tmp_path):
    url = http_server.route("/missing", status=404)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError, match="404"):
        fetch(url, dest, None, **FAST)
    assert http_server.count("/missing") == 1
    _assert_clean(dest)


def test_connection_refused_reports_unreachable(refused_url, tmp_path):
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError) as err:
        fetch(refused_url, dest, None, **FAST)
    msg = str(err.value)
    assert "unreachable" in msg and refused_url in msg
    assert "3 attempts" in msg  # retries=2 -> three tries in all
    _assert_clean(dest)


def test_truncated_body_is_retried_then_reported(http_server, tarball_bytes, tmp_path):
    body, md5 = tarball_bytes
    url = http_server.route("/c.tar.gz", body=body, truncate_to=1000)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError) as err:
        fetch(url, dest, md5, **FAST)
    msg = str(err.value)
    assert "truncated" in msg and "1000" in msg and str(len(body)) in msg
    assert http_server.count("/c.tar.gz") == 3
    _assert_clean(dest)


def test_transient_503_then_success(http_server, tarball_bytes, tmp_path):
    body, md5 = tarball_bytes
    url = http_server.route("/c.tar.gz", body=body, fail_first=2)
    dest = tmp_path / "c.tar.gz"
    prov = fetch(url, dest, md5, **FAST)
    assert http_server.count("/c.tar.gz") == 3
    assert prov["attempts"] == 3
    assert _md5(dest.read_bytes()) == md5


def test_persistent_503_gives_up_with_status(http_server, tmp_path):
    url = http_server.route("/c.tar.gz", status=503)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError, match="503"):
        fetch(url, dest, None, **FAST)
    assert http_server.count("/c.tar.gz") == 3
    _assert_clean(dest)


def test_junk_with_matching_md5_is_not_a_gzip_tar(http_server, tmp_path):
    junk = b"<html>this is not a tarball</html>" * 10
    url = http_server.route("/junk", body=junk)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError, match="not a gzip tar"):
        fetch(url, dest, _md5(junk), **FAST)
    _assert_clean(dest)


def test_gzip_tar_without_cifar_members_is_rejected(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("something-else/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    src = tmp_path / "other.tar.gz"
    src.write_bytes(gzip.compress(raw.getvalue()))
    dest = tmp_path / "dest" / "c.tar.gz"
    with pytest.raises(DownloadError, match="cifar-10-batches-py"):
        fetch(src, dest, None, **FAST)
    _assert_clean(dest)


@pytest.mark.parametrize("as_uri", [False, True])
def test_local_path_and_file_uri(synthetic_tarball, tmp_path, as_uri):
    path, md5 = synthetic_tarball
    source = path.resolve().as_uri() if as_uri else str(path)
    dest = tmp_path / "copy.tar.gz"
    prov = fetch(source, dest, md5, **FAST)
    assert prov["url"].startswith("file://")
    assert _md5(dest.read_bytes()) == md5


def test_missing_local_file_fails_fast(tmp_path):
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(DownloadError, match="not readable"):
        fetch(tmp_path / "nope.tar.gz", dest, None, **FAST)
    _assert_clean(dest)


def test_failure_removes_stale_destination(http_server, tmp_path):
    dest = tmp_path / "c.tar.gz"
    dest.write_bytes(b"stale from an earlier run")
    url = http_server.route("/missing", status=404)
    with pytest.raises(DownloadError):
        fetch(url, dest, None, **FAST)
    _assert_clean(dest)


def test_read_md5_file_formats(tmp_path):
    digest = "1ac45f04c9df64341f10e9eabbf6ea58"
    (tmp_path / "a.md5").write_text(f"{digest.upper()}  cifar-10-python.tar.gz\n")
    (tmp_path / "b.md5").write_text(f"{digest}\n")
    (tmp_path / "c.md5").write_text("not a digest\n")
    assert read_md5_file(tmp_path / "a.md5") == digest
    assert read_md5_file(tmp_path / "b.md5") == digest
    with pytest.raises(ValueError):
        read_md5_file(tmp_path / "c.md5")


def test_synthetic_md5_file_matches(synthetic_tarball):
    path, md5 = synthetic_tarball
    assert read_md5_file(path.with_name(path.name + ".md5")) == md5 == _md5(path.read_bytes())


def test_atomic_helpers_publish_only_on_success(tmp_path):
    import numpy as np

    from handbackprop.atomic import atomic_path, save_npy, write_json

    dest = tmp_path / "sub" / "x.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and tmp.name.startswith(".x.bin.tmp-")
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    _assert_clean(dest)

    save_npy(tmp_path / "a.bin", np.arange(3))  # exact name kept: no ".npy" appended
    assert np.load(tmp_path / "a.bin").tolist() == [0, 1, 2]
    write_json(tmp_path / "s.json", {"b": np.float32(0.5), "a": np.arange(2), "n": np.int64(3)})
    text = (tmp_path / "s.json").read_text()
    assert text.index('"a"') < text.index('"b"') and '"n": 3' in text and "0.5" in text
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_partial_download_of_a_killed_process_is_removed(synthetic_tarball, tmp_path):
    import faults

    path, md5 = synthetic_tarball
    dest = tmp_path / "cifar-10-python.tar.gz"
    pid = faults.killed_writer(dest, payload=b"x" * 1000)
    assert dest.with_name(f".{dest.name}.tmp-{pid}").exists()
    lines = []
    fetch(path, dest, md5, **{**FAST, "log": lines.append})
    assert any(f".tmp-{pid}" in line and "no longer exists" in line for line in lines)
    assert _md5(dest.read_bytes()) == md5
    _assert_clean(dest.with_name("absent"))


def test_official_url_unreachable_names_it_and_the_local_copy_fix(tmp_path, monkeypatch):
    """No internet: DNS fails for the official host. The error says so and how to use a local copy."""
    import socket
    import urllib.error
    import urllib.request

    from handbackprop.data.download import OFFICIAL_URL, SourceUnreachable

    calls = []

    def no_network(url, timeout):
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(SourceUnreachable) as err:
        fetch(OFFICIAL_URL, dest, None, **FAST)
    msg = str(err.value)
    assert msg.startswith(f"the official CIFAR-10 URL {OFFICIAL_URL} is unreachable "
                          f"([Errno -3] Temporary failure in name resolution)")
    assert "3 attempts" in msg and "data.url" in msg and "config.yaml" in msg
    assert "config/shared-jpeg.yaml" in msg
    assert err.value.attempts == 3 == len(calls) and err.value.url == OFFICIAL_URL
    _assert_clean(dest)


def test_server_errors_are_not_called_unreachable(http_server, tmp_path):
    from handbackprop.data.download import SourceUnreachable

    url = http_server.route("/c.tar.gz", status=503)
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "c.tar.gz", None, **FAST)
    assert not isinstance(err.value, SourceUnreachable) and "data.url" not in str(err.value)
