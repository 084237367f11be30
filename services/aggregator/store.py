"""The job's Parquet store: star list, photometry, job state.

Layout under ``DIR/tess/sector_SSS/camC_ccdD/``:

* ``stars.parquet``: the reference star list;
* ``photometry.parquet/``: a Parquet dataset folder. While a job runs it holds one file per
  cadence (``cadence-000123.parquet``): writing a cadence twice replaces the file with the
  same rows, so redelivered messages never duplicate a row, and the set of files is the
  resume state. When the job completes, the cadences are compacted into star-major files
  (``compact-*.parquet``, sorted by star then time): a star's light curve is then one
  contiguous read, and neighbouring values of a star compress well (byte-stream-split and
  zstd, with ``flux_err``, ``bkg``, ``x`` and ``y`` rounded far below their own precision:
  see :func:`quantize_photometry`), about 8 bytes per measurement instead of 30;
* ``job.json``: the job's expected cadences, the ones that failed with reasons, the
  compacted cadences.

Every file is written to a temporary name and renamed into place, so a crash or a full disk
never leaves a half-written Parquet file behind; compaction records its plan in ``job.json``
before it deletes anything, and :meth:`JobStore.recover` finishes an interrupted one.

Examples
--------
>>> import tempfile, numpy as np
>>> from tess_ffi.shared.contracts import photometry_table
>>> store = JobStore(tempfile.mkdtemp())
>>> store.write_cadence(5, 1325.4, photometry_table([1, 2], flux=np.array([1., 2.])))
>>> store.write_cadence(5, 1325.4, photometry_table([1, 2], flux=np.array([1., 2.])))
>>> sorted(store.stored_cadences()), store.read_photometry().num_rows
([5], 2)
>>> with store.compaction() as compact:
...     for chunk in store.iter_lightcurves(np.array([1, 2])):
...         _ = compact.write(chunk)
>>> sorted(store.stored_cadences()), store.read_photometry().num_rows
([5], 2)
>>> sorted(p.name.split("-")[0] for p in store.photometry_dir.iterdir())
['compact']
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tess_ffi.shared.contracts import (
    APERTURE_RADII,
    PHOTOMETRY_SCHEMA,
    STORED_PHOTOMETRY_COLUMNS,
    STORED_PHOTOMETRY_SCHEMA,
)
from tess_ffi.shared.storage import StoreError, atomic_write_json, atomic_write_table

__all__ = ["JobStore", "StoreError", "Compaction", "quantize_photometry", "PHOTOMETRY_COLUMNS"]

_CADENCE_FILE = re.compile(r"^cadence-(\d{6,})\.parquet$")
_COMPACT_FILE = re.compile(r"^compact-[0-9a-f]+\.parquet$")

#: Columns of the measurements themselves (every file has them; the compacted files also
#: hold ``flux_corrected`` and ``aperture_radius``, see
#: :data:`~tess_ffi.shared.contracts.STORED_PHOTOMETRY_SCHEMA`).
PHOTOMETRY_COLUMNS = [c for c in STORED_PHOTOMETRY_COLUMNS
                      if c not in ("flux_corrected", "aperture_radius")]
#: What the dataset is read with: the stored columns and, from per-cadence files, every
#: aperture's flux (null in compacted files, which keep the chosen aperture's only).
READ_SCHEMA = pa.unify_schemas([STORED_PHOTOMETRY_SCHEMA, PHOTOMETRY_SCHEMA])
#: Columns the light-curve pass reads: everything but the cleaning's output.
LIGHTCURVE_COLUMNS = [c for c in READ_SCHEMA.names if c != "flux_corrected"]

#: Row groups of per-cadence files: small enough that a read of a range of stars skips most.
CADENCE_ROW_GROUP = 2048

#: Float32 mantissa bits kept per column at compaction (23 is all): flux_err to 5e-4 of
#: itself, bkg to 4e-3 e-/s at 150 e-/s, x and y to 2e-3 px at column 2000. Each is far
#: below the measurement's own uncertainty; flux keeps every bit.
MANTISSA_BITS = {"flux_err": 10, "bkg": 14, "x": 19, "y": 19,
                 **{f"flux_err_{suffix}": 10 for suffix in APERTURE_RADII}}

COMPACT_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 6,
    "use_dictionary": ["star_id", "cadence", "btjd", "quality", "aperture_radius"],
    "use_byte_stream_split": ["flux", "flux_err", "bkg", "x", "y", "flux_corrected"],
}


def _keep_mantissa_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Round float32 values to ``bits`` mantissa bits (to nearest; NaN and inf unchanged)."""
    raw = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    drop = 23 - bits
    rounded = ((raw + np.uint32(1 << (drop - 1))) & np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF))
    out = rounded.view(np.float32)
    return np.where(np.isfinite(values), out, values).astype(np.float32)


def quantize_photometry(table: pa.Table) -> pa.Table:
    """Round ``flux_err``, ``bkg``, ``x`` and ``y`` to :data:`MANTISSA_BITS`.

    >>> t = pa.table({"x": np.array([1000.123456], np.float32)})
    >>> float(quantize_photometry(t).column("x")[0].as_py())
    1000.123046875
    """
    for name, bits in MANTISSA_BITS.items():
        if name in table.column_names:
            idx = table.column_names.index(name)
            values = table.column(name).to_numpy(zero_copy_only=False)
            table = table.set_column(idx, name, pa.array(_keep_mantissa_bits(values, bits)))
    return table


class Compaction:
    """Writes star-major photometry to a hidden file; on success switches it in atomically."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.name = f"compact-{uuid.uuid4().hex[:12]}.parquet"
        self.hidden = store.photometry_dir / f".{self.name}.tmp"
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> pa.Table:
        """Append star-sorted rows (chunks must come in star order); returns them as stored.

        Rows without ``flux_corrected`` or ``aperture_radius`` (light curves not cleaned)
        store them as null."""
        for name in ("flux_corrected", "aperture_radius"):
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, type=pa.float32()))
        table = quantize_photometry(
            table.select(STORED_PHOTOMETRY_COLUMNS).cast(STORED_PHOTOMETRY_SCHEMA))
        try:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.hidden, table.schema, **COMPACT_OPTIONS)
            self._writer.write_table(table, row_group_size=1 << 20)
        except OSError as exc:
            raise StoreError(f"cannot write {self.hidden}: {exc.strerror or exc}") from None
        return table

    def commit(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        store = self.store
        cadence_files = sorted(p.name for p in store._photometry_files(_CADENCE_FILE))
        old = sorted(p.name for p in store._photometry_files(_COMPACT_FILE))
        cadences = sorted(store.stored_cadences())
        state = store.read_state()
        state["compaction"] = {"file": self.name, "remove": cadence_files + old,
                               "cadences": cadences}
        store.write_state(state)  # the plan is on disk before anything is deleted
        store.recover()

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self.hidden.unlink(missing_ok=True)




class JobStore:
    """Parquet outputs of one sector/camera/CCD."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.stars_path = self.root / "stars.parquet"
        self.photometry_dir = self.root / "photometry.parquet"
        self.state_path = self.root / "job.json"

    # -- state --------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {}
        return dict(json.loads(self.state_path.read_text()))

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(state, self.state_path)

    def clear(self) -> None:
        """Start over (``--no-resume``): remove this job's outputs."""
        if self.root.exists():
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    # -- stars --------------------------------------------------------------------------
    def read_stars(self) -> pa.Table | None:
        if not self.stars_path.exists():
            return None
        return pq.read_table(self.stars_path)

    def write_stars(self, stars: pa.Table) -> bool:
        """Store the star list unless one exists (the first list wins; ids must not change
        under stored photometry). Returns True when written."""
        if self.stars_path.exists():
            return False
        atomic_write_table(stars, self.stars_path)
        return True

    # -- photometry ---------------------------------------------------------------------
    def cadence_path(self, cadence: int) -> Path:
        return self.photometry_dir / f"cadence-{int(cadence):06d}.parquet"

    def _photometry_files(self, pattern: re.Pattern[str]) -> list[Path]:
        if not self.photometry_dir.is_dir():
            return []
        return [Path(e.path) for e in os.scandir(self.photometry_dir) if pattern.match(e.name)]

    def has_uncompacted(self) -> bool:
        """True while some photometry is still stored one file per cadence."""
        return bool(self._photometry_files(_CADENCE_FILE))

    def compacted_cadences(self) -> set[int]:
        return set(self.read_state().get("compacted_cadences", []))

    def stored_cadences(self) -> set[int]:
        found = self.compacted_cadences()
        for path in self._photometry_files(_CADENCE_FILE):
            m = _CADENCE_FILE.match(path.name)
            assert m is not None
            found.add(int(m.group(1)))
        return found

    def write_cadence(self, cadence: int, btjd: float, table: pa.Table) -> None:
        """Store one FFI's measurements (idempotent: same cadence, same file)."""
        n = table.num_rows
        full = table.add_column(1, "cadence", pa.array(np.full(n, cadence, dtype=np.int32)))
        full = full.add_column(2, "btjd", pa.array(np.full(n, btjd, dtype=np.float64)))
        atomic_write_table(full, self.cadence_path(cadence), row_group_size=CADENCE_ROW_GROUP)

    @contextlib.contextmanager
    def compaction(self) -> Iterator[Compaction]:
        """Rewrite the photometry star-major; committed when the block ends without error."""
        compact = Compaction(self)
        try:
            yield compact
        except BaseException:
            compact.abort()
            raise
        compact.commit()

    def recover(self) -> None:
        """Finish a compaction that was interrupted after its plan was written."""
        state = self.read_state()
        plan = state.get("compaction")
        if not plan:
            return
        hidden = self.photometry_dir / f".{plan['file']}.tmp"
        if hidden.exists():
            for name in plan["remove"]:
                (self.photometry_dir / name).unlink(missing_ok=True)
            os.replace(hidden, self.photometry_dir / plan["file"])
        state["compacted_cadences"] = sorted(set(plan["cadences"]))
        del state["compaction"]
        self.write_state(state)

    def dataset(self) -> ds.Dataset:
        # One schema for per-cadence and compacted files alike (the former have no
        # flux_corrected: it reads as null), whichever file the listing happens to see first.
        return ds.dataset(self.photometry_dir, format="parquet", schema=READ_SCHEMA)

    def read_photometry(self, columns: list[str] | None = None) -> pa.Table:
        if not self.photometry_dir.is_dir():
            raise StoreError(f"no photometry stored in {self.root}")
        return self.dataset().to_table(columns=columns)

    def iter_lightcurves(self, star_ids: np.ndarray, chunk: int = 2000) -> Iterator[pa.Table]:
        """Light curves of ``star_ids`` in chunks of stars, each table sorted by star, time
        (every aperture's flux from per-cadence files, the chosen one's from compacted
        files)."""
        dataset = self.dataset()
        columns = LIGHTCURVE_COLUMNS
        for start in range(0, len(star_ids), chunk):
            ids = np.asarray(star_ids[start : start + chunk])
            # A range filter lets Parquet skip row groups by their statistics (files are in
            # star order); the exact membership test then runs on what is left.
            wanted = (pc.field("star_id") >= int(ids.min())) & (pc.field("star_id") <= int(ids.max()))
            if len(ids) != int(ids.max()) - int(ids.min()) + 1:
                wanted = wanted & pc.field("star_id").isin(pa.array(ids))
            table = dataset.to_table(columns=columns, filter=wanted)
            # Rounded as the compacted files store them, so that what is computed from a
            # job's light curves is the same the first time and on a rerun.
            yield quantize_photometry(
                table.sort_by([("star_id", "ascending"), ("cadence", "ascending")]))
