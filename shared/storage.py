"""Atomic file writes: a Parquet or JSON file either exists whole or not at all.

Every output is written to a temporary name in the same folder and renamed into place, so a
crash, a full disk or a read-only folder never leaves a half-written file, and the error is
one line naming the file.

Examples
--------
>>> import tempfile, pathlib, pyarrow as pa
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
>>> atomic_write_table(pa.table({"a": [1, 2]}), path)
>>> import pyarrow.parquet as pq; pq.read_table(path).num_rows
2
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["StoreError", "atomic_write", "atomic_write_table", "atomic_write_json"]


class StoreError(OSError):
    """An output cannot be written (disk full, read-only folder): one clear line."""


def atomic_write(path: Path | str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_table(table: pa.Table, path: Path | str, **kwargs: Any) -> None:
    """Write a Parquet file atomically (zstd-compressed unless told otherwise)."""
    kwargs.setdefault("compression", "zstd")
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, **kwargs))


def atomic_write_json(data: Any, path: Path | str) -> None:
    """Write a JSON file atomically."""
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True))

    atomic_write(path, write)
