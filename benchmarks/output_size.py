"""Parquet bytes per stored measurement, on photometry as the photometer produces it.

Simulated FFIs with 10,000 stars are measured by the photometer's own ``measure_ffi`` and
stored by the aggregator's own ``JobStore.write_cadence`` (one file per cadence under
``photometry.parquet/``); the figure is the folder's bytes over the rows stored. The same rows
are then written in a few other layouts (nothing in the product changes) to show what bounds
the figure: per-column compressed sizes, and what a different layout would give.

Target: < 12 bytes per measurement.

Run: ``python benchmarks/output_size.py [--stars 10000] [--ffis 16]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

try:
    from benchmarks import _common as C
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]

FLOAT_COLUMNS = ["flux", "flux_err", "bkg", "x", "y"]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def column_bytes(paths: list[Path]) -> dict[str, int]:
    """Compressed bytes per column over Parquet files (column chunks only, no footers)."""
    out: dict[str, int] = {}
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            for c in range(group.num_columns):
                col = group.column(c)
                out[col.path_in_schema] = out.get(col.path_in_schema, 0) + col.total_compressed_size
    return out


def main(argv: list[str] | None = None) -> C.Report:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stars", type=int, default=C.N_STARS)
    p.add_argument("--ffis", type=int, default=16)
    args = p.parse_args(argv)

    from tess_ffi.services.aggregator.store import JobStore
    from tess_ffi.services.photometer.service import measure_ffi
    from tess_ffi.shared.contracts import JobSpec

    C.header(f"output size: {args.ffis} FFIs x {args.stars} stars through measure_ffi and "
             "JobStore.write_cadence")
    report = C.Report("output_size")
    sim = C.sector(args.stars, args.ffis)
    stars = C.catalog_stars(sim)
    job = JobSpec(sector=1, camera=1, ccd=1)
    tmp = Path(tempfile.mkdtemp(prefix="tess-ffi-bench-size-"))
    try:
        store = JobStore(tmp / "job")
        tables = []
        t0 = time.perf_counter()
        for i in range(args.ffis):
            btjd, _, table = measure_ffi(C.ffi_message(sim, i, sim.ffi_bytes(i), stars, job))
            store.write_cadence(i, btjd, table)
            n = table.num_rows
            tables.append(table.add_column(1, "cadence", pa.array(np.full(n, i, np.int32)))
                          .add_column(2, "btjd", pa.array(np.full(n, btjd))))
        print(f"  measured and stored {args.ffis} FFIs in {time.perf_counter() - t0:.0f} s",
              flush=True)
        rows = sum(t.num_rows for t in tables)
        product = folder_bytes(store.photometry_dir)
        files = sorted(store.photometry_dir.glob("*.parquet"))
        per_col = column_bytes(files)
        bpm = product / rows
        report.add("bytes per measurement, as stored (one file per cadence)", bpm, "B",
                   "< 12", bpm < 12,
                   note=f"{rows:,} rows in {len(files)} files, {product / 1e6:.1f} MB")
        for name in ["star_id", "cadence", "btjd", *FLOAT_COLUMNS, "quality"]:
            report.add(f"  column {name}", per_col.get(name, 0) / rows, "B/meas")
        footer = product - sum(per_col.values())
        report.add("  footers, schema and page headers", footer / rows, "B/meas")

        # The same rows in other layouts: what the figure is bounded by.
        alt = tmp / "alt"
        alt.mkdir()
        everything = pa.concat_tables(tables)

        def write(name: str, table: pa.Table, **kw: object) -> float:
            path = alt / f"{name}.parquet"
            pq.write_table(table, path, **kw)
            return path.stat().st_size / rows

        bss = {"use_byte_stream_split": FLOAT_COLUMNS, "compression": "zstd"}
        per_cadence_bss = 0.0
        for i, t in enumerate(tables):
            path = alt / f"cad-{i}.parquet"
            pq.write_table(t, path, compression="zstd",
                           use_byte_stream_split=FLOAT_COLUMNS)
            per_cadence_bss += path.stat().st_size
        report.add("what-if: per-cadence files + byte_stream_split floats", per_cadence_bss / rows,
                   "B", "< 12", per_cadence_bss / rows < 12)
        star_major = everything.sort_by([("star_id", "ascending"), ("cadence", "ascending")])
        v = write("star_major", star_major, compression="zstd")
        report.add("what-if: one file sorted by star, cadence (zstd)", v, "B", "< 12", v < 12)
        v = write("star_major_bss", star_major, **bss, row_group_size=1 << 22)
        report.add("what-if: sorted by star, cadence + byte_stream_split", v, "B", "< 12", v < 12)
        slim = star_major.drop_columns(["btjd"])
        v = write("star_major_bss_nobtjd", slim, **bss, row_group_size=1 << 22)
        report.add("what-if: as above, btjd kept once per cadence elsewhere", v, "B", "< 12",
                   v < 12)
        per_col_sm = column_bytes([alt / "star_major_bss_nobtjd.parquet"])
        for name in ["flux", "flux_err", "bkg", "x", "y"]:
            report.add(f"  column {name} in that layout", per_col_sm.get(name, 0) / rows, "B/meas")
        moved = star_major.set_column(
            star_major.schema.get_field_index("x"), "x",
            pa.array(star_major.column("x").to_numpy()
                     + np.random.default_rng(1).normal(0, 0.02, rows).astype(np.float32)))
        v = write("star_major_moving_x", moved.drop_columns(["btjd"]), **bss,
                  row_group_size=1 << 22)
        report.add("what-if: as above, but x, y move per frame (x only here)", v, "B",
                   note="a per-frame WCS: positions are no longer constant per star")
        report.note("flux, flux_err and bkg are float32 with noise in every mantissa bit: "
                    "about 3-4 bytes each whatever the codec; the simulated WCS is fixed, so x, y "
                    "are constant per star, but in a per-cadence file they vary from row to "
                    "row (different stars) and cost ~3-4 bytes each too; star_id adds ~1-2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.finish()
    return report


if __name__ == "__main__":
    main()
