"""The sha256 of a model file, read once per process: every check and digest of the same file shares it."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The file's sha256; cached on its path, size and modification time, so a replaced file is read again."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
