"""The "keras" source: the official cifar-10-python.tar.gz, downloaded once (without importing
Keras) into the Keras cache ($KERAS_HOME, default ~/.keras) and checked against its SHA-256; the
origin comes from $CIFAR_LAB_KERAS_ORIGIN or KERAS_ORIGIN."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from cifar_core.data.batches import BATCH_DIR, META_FILE
from cifar_core.data.dataset import LOCAL_COPY_HINT, _one_line
from cifar_core.errors import DataError

KERAS_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ORIGIN_ENV = "CIFAR_LAB_KERAS_ORIGIN"
KERAS_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # of KERAS_ORIGIN's file
KERAS_FNAME = "cifar-10-python.tar.gz"


def _keras_origin() -> str:
    return os.environ.get(ORIGIN_ENV) or KERAS_ORIGIN


def _keras_home() -> Path:
    # Read at call time: keras itself reads KERAS_HOME once, when it is first imported.
    home = os.environ.get("KERAS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".keras"


def _fetch_keras() -> Path:
    """The official batches in the Keras cache, downloading the tarball there if it is not yet present
    (where keras.datasets.cifar10 would put it, without importing Keras: that is TensorFlow, seconds
    and ~500 MB in the dashboard's process)."""
    datasets = _keras_home() / "datasets"
    # keras.datasets.cifar10.load_data (Keras 3, then Keras 2) may already have extracted it.
    for extracted in (datasets / "cifar-10-batches-py-target" / BATCH_DIR, datasets / BATCH_DIR):
        if (extracted / META_FILE).is_file():
            return extracted
    path = datasets / KERAS_FNAME
    if not path.is_file():
        origin = _keras_origin()
        _download(origin, path, KERAS_SHA256 if origin == KERAS_ORIGIN else None)
    return path


def _download(origin: str, path: Path, sha256: str | None) -> None:
    """origin saved as path, whole or not at all, and checked against sha256 when it is given."""
    import http.client
    import urllib.error
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(origin, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(f"the download from {origin} is corrupt (sha256 {digest.hexdigest()[:12]}…, expected "
                            f"{sha256[:12]}…); try again, or {LOCAL_COPY_HINT}")
        os.replace(tmp, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise DataError(
            f"the official CIFAR-10 download could not be reached ({origin}: {_download_reason(e)}); {LOCAL_COPY_HINT}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def _download_reason(err: BaseException) -> str:
    """Why a download failed, in words: Keras's get_file says "URL fetch failure on URL: None --
    [Errno -2] Name or service not known"; the reader needs "Name or service not known"."""
    seen = err
    while seen is not None:  # the URLError (or OSError) Keras re-raised, if it kept it
        reason = getattr(seen, "reason", None)
        reason = reason if reason is not None else (seen if isinstance(seen, OSError) else None)
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        if isinstance(reason, str) and reason:
            return reason
        seen = seen.__cause__ or seen.__context__
    text = _one_line(err)
    text = re.sub(r"^URL fetch failure on \S+?:?\s+", "", text)
    text = re.sub(r"^(None|\d{3})\s+--\s+", lambda m: "" if m.group(1) == "None" else f"HTTP {m.group(1)}: ", text)
    return re.sub(r"\[Errno -?\d+\]\s*", "", text).strip() or type(err).__name__
