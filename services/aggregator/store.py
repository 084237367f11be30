"""The job's Parquet store: star list, per-cadence photometry, job state.

Layout under ``DIR/tess/sector_SSS/camC_ccdD/``:

* ``stars.parquet``: the reference star list;
* ``photometry.parquet/``: a Parquet dataset folder, one file per cadence
  (``cadence-000123.parquet``). Writing a cadence twice replaces the file with the same
  rows, so redelivered messages never duplicate a row, and the set of files *is* the resume
  state;
* ``job.json``: the job's expected cadences and the ones that failed, with reasons.

Every file is written to a temporary name in the same folder and renamed into place, so a
crash or a full disk never leaves a half-written Parquet file behind.

Examples
--------
>>> import tempfile, numpy as np
>>> from tess_ffi.shared.contracts import photometry_table
>>> store = JobStore(tempfile.mkdtemp())
>>> store.write_cadence(5, 1325.4, photometry_table([1, 2], flux=np.array([1., 2.])))
>>> store.write_cadence(5, 1325.4, photometry_table([1, 2], flux=np.array([1., 2.])))
>>> sorted(store.stored_cadences()), store.read_photometry().num_rows
([5], 2)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tess_ffi.shared.storage import StoreError, atomic_write_json, atomic_write_table

__all__ = ["JobStore", "StoreError"]

_CADENCE_FILE = re.compile(r"^cadence-(\d{6,})\.parquet$")


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

    def stored_cadences(self) -> set[int]:
        if not self.photometry_dir.is_dir():
            return set()
        found = set()
        for entry in os.scandir(self.photometry_dir):
            m = _CADENCE_FILE.match(entry.name)
            if m:
                found.add(int(m.group(1)))
        return found

    def write_cadence(self, cadence: int, btjd: float, table: pa.Table) -> None:
        """Store one FFI's measurements (idempotent: same cadence, same file)."""
        n = table.num_rows
        full = table.add_column(1, "cadence", pa.array(np.full(n, cadence, dtype=np.int32)))
        full = full.add_column(2, "btjd", pa.array(np.full(n, btjd, dtype=np.float64)))
        atomic_write_table(full, self.cadence_path(cadence))

    def dataset(self) -> ds.Dataset:
        return ds.dataset(self.photometry_dir, format="parquet")

    def read_photometry(self, columns: list[str] | None = None) -> pa.Table:
        if not self.photometry_dir.is_dir():
            raise StoreError(f"no photometry stored in {self.root}")
        return self.dataset().to_table(columns=columns)

    def iter_lightcurves(self, star_ids: np.ndarray, chunk: int = 2000) -> Iterator[pa.Table]:
        """Light curves of ``star_ids`` in chunks of stars, each table sorted by star, time."""
        dataset = self.dataset()
        columns = ["star_id", "cadence", "btjd", "flux", "flux_err", "quality"]
        for start in range(0, len(star_ids), chunk):
            ids = pa.array(star_ids[start : start + chunk])
            table = dataset.to_table(columns=columns, filter=pc.field("star_id").isin(ids))
            yield table.sort_by([("star_id", "ascending"), ("cadence", "ascending")])
