"""Fetch the CIFAR-10 tarball from an http(s) URL, a file:// URL or a local path, verifiably.

Every source goes through the same urllib streaming code (local paths become
file:// URIs), so the mirror used in tests exercises the same path as the real
download. The file is streamed into a temp file next to ``dest``, its md5 is
computed on the fly, it is checked to be a gzip tar holding
``cifar-10-batches-py/`` members, and only then renamed into place: after any
failure nothing exists at ``dest`` and no temp file remains.
"""
import hashlib
import http.client
import re
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from handbackprop.atomic import atomic_path, remove_stale_temps

__all__ = ["DownloadError", "SourceUnreachable", "OFFICIAL_URL", "fetch", "read_md5_file",
           "source_to_url"]

CIFAR_ROOT = "cifar-10-batches-py/"
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# What to do when the source cannot be reached; the keys are the workflow's config keys.
LOCAL_COPY_ADVICE = (
    "to use a local copy instead, point data.url at it (a path or file:// URL, its md5 in "
    "data.md5 or data.md5_file) in config.yaml or a --configfile, e.g. "
    "--configfile config/shared-jpeg.yaml after building results/source/cifar-10-jpeg.tar.gz "
    "from ../shared/datasets (README)")
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


class DownloadError(RuntimeError):
    """The tarball could not be fetched or failed verification."""


class SourceUnreachable(DownloadError):
    """No connection to the source host after every retry (no network, DNS, refused, timeout)."""

    def __init__(self, url, reason, attempts):
        self.url, self.reason, self.attempts = url, reason, attempts
        which = "the official CIFAR-10 URL" if url == OFFICIAL_URL else "the source"
        super().__init__(f"{which} {url} is unreachable ({reason}); giving up after "
                         f"{attempts} attempts; {LOCAL_COPY_ADVICE}")


class _TransientError(Exception):
    """A failure worth retrying (network hiccup, 5xx, truncated body); internal only.

    ``reason`` is set when no connection was made at all (host unreachable), as
    opposed to a server that answered badly.
    """

    def __init__(self, message, reason=None):
        super().__init__(message)
        self.reason = reason


def source_to_url(source):
    """Return ``source`` as a URL: http(s)/file URLs unchanged, filesystem paths as file:// URIs."""
    text = str(source)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https", "file"):
        return text
    return Path(text).expanduser().resolve().as_uri()


def read_md5_file(path):
    """Parse an md5 file holding ``<hex>  <name>`` (md5sum format) or a bare hex digest.

    Returns the digest in lower case; raises ValueError if no valid digest is found.
    """
    text = Path(path).read_text(encoding="utf-8")
    for line in text.splitlines():
        fields = line.strip().split()
        if not fields:
            continue
        digest = fields[0]
        if _MD5_RE.match(digest):
            return digest.lower()
        break
    raise ValueError(f"{path}: no md5 digest found (expected '<32 hex digits>  <name>' or bare hex)")


def _normalise_md5(expected_md5):
    """Return the expected digest in lower case, or None when none is given."""
    if expected_md5 is None or not str(expected_md5).strip():
        return None
    digest = str(expected_md5).strip().lower()
    if not _MD5_RE.match(digest):
        raise ValueError(f"expected_md5 {expected_md5!r} is not a 32-digit hex md5")
    return digest


def _fmt_mb(n):
    """Format a byte count in MB for progress lines."""
    return f"{n / 1e6:.1f} MB"


def _stream(url, tmp, timeout_s, chunk_bytes, log):
    """Stream one attempt of ``url`` into ``tmp``; return (md5 hex, bytes written).

    Raises _TransientError for failures worth retrying and DownloadError for
    the rest (HTTP 4xx, missing local file).
    """
    try:
        resp = urllib.request.urlopen(url, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        # HTTPError is a subclass of URLError, so it must be caught first.
        msg = f"HTTP error {e.code} {e.reason} for {url}"
        if e.code >= 500:
            raise _TransientError(msg) from e
        raise DownloadError(msg) from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (FileNotFoundError, IsADirectoryError, PermissionError)):
            # A missing local file will not appear by waiting.
            raise DownloadError(f"source not readable: {url} ({e.reason})") from e
        raise _TransientError(f"source unreachable: {url} ({e.reason})", reason=str(e.reason)) from e
    except (TimeoutError, socket.timeout, ConnectionError) as e:
        raise _TransientError(f"source unreachable: {url} ({e!r})", reason=repr(e)) from e
    except http.client.HTTPException as e:
        raise _TransientError(f"bad response from {url} ({e!r})") from e

    md5 = hashlib.md5()
    done = 0
    with resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        started = last_report = time.monotonic()
        try:
            with open(tmp, "wb") as out:
                while True:
                    chunk = resp.read(chunk_bytes)
                    if not chunk:
                        break
                    out.write(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last_report >= 1.0:
                        log(_progress_line(url, done, total, now - started))
                        last_report = now
        except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            # IncompleteRead lands here too: it is an HTTPException.
            raise _TransientError(
                f"download of {url} interrupted after {done} bytes "
                f"(Content-Length {total}): {e!r}") from e
        log(_progress_line(url, done, total, time.monotonic() - started))

    if total is not None and done != total:
        # urllib returns b"" rather than raising when the server closes early.
        raise _TransientError(
            f"truncated download of {url}: received {done} bytes, Content-Length was {total}")
    return md5.hexdigest(), done


def _progress_line(url, done, total, elapsed):
    """One human-readable progress line: bytes done / total and throughput."""
    rate = done / 1e6 / elapsed if elapsed > 0 else float("nan")
    if total:
        return (f"{url}: {_fmt_mb(done)} / {_fmt_mb(total)} "
                f"({100.0 * done / total:.0f}%) at {rate:.1f} MB/s")
    return f"{url}: {_fmt_mb(done)} at {rate:.1f} MB/s"


def _check_cifar_tar(path, url):
    """Raise DownloadError unless ``path`` is a gzip tar with cifar-10-batches-py/ members."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        raise DownloadError(f"{url} is not a gzip tar (file starts with {magic!r}, not gzip magic)")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            # Iterating walks the whole archive, so a corrupt tail is caught here too.
            names = [m.name for m in tar]
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DownloadError(f"{url} is not a valid gzip tar: {e}") from e
    if not any(n.startswith(CIFAR_ROOT) for n in names):
        raise DownloadError(
            f"{url} is a gzip tar but has no {CIFAR_ROOT} members "
            f"(first members: {names[:5]})")


def fetch(source, dest, expected_md5, *, retries=4, backoff_s=1.0, timeout_s=60,
          chunk_bytes=1 << 20, log=print):
    """Download ``source`` to ``dest`` atomically, verifying md5 and CIFAR tarball layout.

    ``source`` is an http(s):// URL, a file:// URL or a local path. ``retries`` is
    the number of retries after the first attempt for transient failures
    (unreachable host, timeouts, HTTP 5xx, truncated body), with exponential
    backoff ``backoff_s * 2**k``. HTTP 4xx, checksum mismatches and malformed
    archives are not retried. If ``expected_md5`` is empty/None the digest is
    recorded but not checked. When no connection could be made on any attempt
    the error is SourceUnreachable, whose message says how to use a local copy.

    Returns provenance: {"source", "url", "dest", "md5", "bytes", "seconds",
    "attempts", "md5_verified"}. Raises DownloadError on failure, after which
    neither ``dest`` nor a temp file exists.
    """
    url = source_to_url(source)
    dest = Path(dest)
    expected = _normalise_md5(expected_md5)
    if expected is None:
        log(f"warning: no expected md5 given for {url}; the download will not be verified")
    # Never leave a stale file that a failed run could be mistaken for.
    dest.unlink(missing_ok=True)
    # A download killed with SIGKILL leaves its partial temp file (up to the whole tarball).
    for stale in remove_stale_temps(dest):
        log(f"removed {stale.name}, a partial download left by a process that no longer exists")

    started = time.monotonic()
    max_attempts = 1 + max(0, int(retries))
    for attempt in range(1, max_attempts + 1):
        try:
            with atomic_path(dest) as tmp:
                log(f"fetching {url} -> {dest} (attempt {attempt}/{max_attempts})")
                actual, nbytes = _stream(url, tmp, timeout_s, chunk_bytes, log)
                if expected is not None and actual != expected:
                    raise DownloadError(
                        f"checksum mismatch for {url}: expected md5 {expected}, got {actual}")
                _check_cifar_tar(tmp, url)
        except _TransientError as e:
            if attempt == max_attempts:
                if e.reason is not None:
                    raise SourceUnreachable(url, e.reason, attempt) from e
                raise DownloadError(f"{e}; giving up after {attempt} attempts") from e
            delay = backoff_s * 2 ** (attempt - 1)
            log(f"attempt {attempt} failed: {e}; retrying in {delay:.2f} s")
            time.sleep(delay)
            continue
        seconds = time.monotonic() - started
        log(f"fetched {url}: {nbytes} bytes, md5 {actual}, {seconds:.1f} s, {attempt} attempt(s)")
        return {
            "source": str(source),
            "url": url,
            "dest": str(dest),
            "md5": actual,
            "md5_verified": expected is not None,
            "bytes": nbytes,
            "seconds": round(seconds, 3),
            "attempts": attempt,
        }
    raise AssertionError("unreachable")  # the loop always returns or raises
