"""Machine-learning exports: one feature row per star and full-length time series.

:func:`export_dataset` writes ``DIR/exports/NAME/``:

* ``features.parquet`` and ``features.csv``: one row per exported star and target, keyed by
  ``target`` (``sSSSS-C-D``) and ``star_id``: the star list's columns, per-star photometry
  statistics (:func:`tess_ffi.products.tables.lightcurve_stats`, prefixed ``phot_`` where a
  name would clash), every metric of ``variability.parquet``, and the candidate columns
  (``is_candidate``, ``catalog``, ``catalog_id``, ``catalog_tmag``, ``catalog_sep_arcsec``);
  ``ts_file`` and ``ts_row`` point at the star's time series;
* ``timeseries/sSSSS-C-D.npz``: per target, arrays with one row per exported star and one
  column per cadence (every stored cadence: nothing is truncated or resampled):
  ``time`` (the star's own barycentric time, BTJD, float64: the FFI header's time, which is
  for the CCD's centre, plus the star's offset, see
  :func:`~tess_ffi.products.tables.with_star_times`), ``flux``, ``flux_err`` (raw aperture
  flux, e-/s, float32, NaN where the star was not measured), ``flux_corrected`` (the flux
  divided by the aggregator's common-mode model, e-/s, float32, NaN where not measured or not
  cleaned), ``flux_norm`` (the corrected flux where there is one, else the raw flux
  (:func:`~tess_ffi.products.tables.best_flux`), over the star's median of it at usable
  points), ``quality`` (int32, -1 where not measured), ``mask`` (bool, True where the point
  is usable: measured, finite and without any bad quality bit), and ``star_id``, ``cadence``,
  ``time_ccd`` (the header's time of each cadence), ``sector``, ``camera``, ``ccd``;
* ``manifest.json``: the filters, targets, counts and this layout.

Stars are kept when their completeness (usable points over the job's expected cadences) is at
least ``min_completeness`` and their S/N (``snr`` of ``variability.parquet``, else median flux
over median error) at least ``min_snr``.

Examples
--------
>>> import numpy as np
>>> cube = dense_matrix(np.array([0, 0, 1]), np.array([0, 2, 1]), np.array([1., 2., 3.]),
...                     2, 3, fill=np.nan)
>>> cube.tolist()
[[1.0, nan, 2.0], [nan, 3.0, nan]]
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from tess_ffi.shared.quality import DEFAULT_BAD_BITS, good_mask
from tess_ffi.shared.storage import atomic_write, atomic_write_json, atomic_write_table

from .tables import (
    ProductError,
    Target,
    best_flux,
    default_data_dir,
    expected_cadences,
    lightcurve_stats,
    list_targets,
    load_photometry,
    load_stars,
    star_time_offsets,
    target_dir,
    with_star_times,
)

__all__ = ["ExportResult", "export_dataset", "dense_matrix", "target_features"]

Progress = Callable[[int, int, str], None]
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class ExportResult:
    """What :func:`export_dataset` wrote."""

    folder: Path
    features: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    n_considered: int = 0


def dense_matrix(
    rows: npt.ArrayLike,
    cols: npt.ArrayLike,
    values: npt.ArrayLike,
    n_rows: int,
    n_cols: int,
    *,
    fill: Any,
    dtype: Any = None,
) -> npt.NDArray[Any]:
    """A (n_rows, n_cols) array with ``values`` at (``rows``, ``cols``) and ``fill`` elsewhere."""
    v = np.asarray(values)
    out = np.full((n_rows, n_cols), fill, dtype=dtype or v.dtype)
    out[np.asarray(rows, np.int64), np.asarray(cols, np.int64)] = v
    return out


def _read_optional(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def target_features(
    target: Target,
    data_dir: Path | str | None = None,
    *,
    photometry: pd.DataFrame | None = None,
    bad_bits: int = DEFAULT_BAD_BITS,
) -> pd.DataFrame:
    """Feature rows of every star of ``target`` (stars + photometry statistics + variability
    + candidate columns), before any filter.

    ``photometry`` (default: all of the target's, read here) gets each star's own times
    (:func:`~tess_ffi.products.tables.with_star_times`) unless it has them already, so
    ``btjd_start`` and ``btjd_end`` are the star's."""
    root = default_data_dir(data_dir)
    folder = target_dir(target, root)
    stars = _read_optional(folder / "stars.parquet")
    if stars is None:
        raise ProductError(f"no star list in {folder}")
    if photometry is None:
        photometry = load_photometry(target=target, data_dir=root)  # type: ignore[assignment]
    assert isinstance(photometry, pd.DataFrame)
    if "btjd_ccd" not in photometry.columns:
        photometry = with_star_times(photometry, stars)
    n_expected = max(expected_cadences(target, root), int(photometry["cadence"].nunique()))
    stats = lightcurve_stats(photometry, n_expected, bad_bits=bad_bits)
    features = stars.merge(stats, on="star_id", how="left",
                           suffixes=("", "_phot"))
    features = features.rename(columns={"snr": "phot_snr", "amplitude_robust":
                                        "phot_amplitude_robust"})
    variability = _read_optional(folder / "variability.parquet")
    if variability is not None:
        var = variability.drop(columns=[c for c in ("ra", "dec", "tmag") if c in variability])
        clash = [c for c in var.columns if c in features.columns and c != "star_id"]
        features = features.rename(columns={c: f"phot_{c}" for c in clash})
        features = features.merge(var, on="star_id", how="left")
    candidates = _read_optional(folder / "candidates.parquet")
    features["is_candidate"] = False
    if candidates is not None:
        features["is_candidate"] = features["star_id"].isin(candidates["star_id"])
        cat_cols = [c for c in ("catalog", "catalog_id", "catalog_tmag", "catalog_sep_arcsec")
                    if c in candidates.columns]
        features = features.merge(candidates[["star_id", *cat_cols]], on="star_id", how="left")
    features.insert(0, "target", target.label)
    features.insert(1, "sector", target.sector)
    features.insert(2, "camera", target.camera)
    features.insert(3, "ccd", target.ccd)
    for col in ("n_good", "n_points"):
        if col in features.columns:
            features[col] = features[col].fillna(0).astype(np.int64)
    features["completeness"] = features["completeness"].fillna(0.0)
    return features


def _timeseries(
    photometry: pd.DataFrame, stars: pd.DataFrame, star_ids: npt.NDArray[np.int64], bad_bits: int
) -> dict[str, npt.NDArray[Any]]:
    """The .npz arrays of ``star_ids`` (sorted) from stored photometry rows (header times in
    ``btjd_ccd`` when present, else ``btjd``) and the target's whole star list."""
    header = "btjd_ccd" if "btjd_ccd" in photometry.columns else "btjd"
    cad_time = photometry.groupby("cadence", sort=True)[header].first()
    cadences = cad_time.index.to_numpy(dtype=np.int64)
    time_ccd = cad_time.to_numpy(dtype=np.float64)
    keep = np.isin(photometry["star_id"].to_numpy(), star_ids)
    p = photometry[keep]
    rows = np.searchsorted(star_ids, p["star_id"].to_numpy())
    cols = np.searchsorted(cadences, p["cadence"].to_numpy())
    n, m = star_ids.size, cadences.size

    def matrix(values: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
        return dense_matrix(rows, cols, values, n, m, fill=fill)

    flux = matrix(p["flux"].to_numpy(np.float32), np.nan)
    err = matrix(p["flux_err"].to_numpy(np.float32), np.nan)
    corrected = (matrix(p["flux_corrected"].to_numpy(np.float32), np.nan)
                 if "flux_corrected" in p.columns else np.full((n, m), np.nan, np.float32))
    quality = matrix(p["quality"].to_numpy(np.int32), -1)
    measured = matrix(np.ones(len(p), bool), False)
    best, _ = best_flux({"flux": flux, "flux_err": err, "flux_corrected": corrected})
    mask = measured & good_mask(quality, bad_bits) & np.isfinite(best)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a star without a usable point
        med = np.nanmedian(np.where(mask, best, np.nan), axis=1) if m else np.zeros(n)
        norm = (best / med[:, None]).astype(np.float32)
    offsets = star_time_offsets(stars, star_ids, time_ccd) if n else None
    time = time_ccd[None, :] + (np.zeros((n, 1)) if offsets is None else offsets)
    return {
        "time": np.broadcast_to(time, (n, m)).copy(),
        "flux": flux,
        "flux_err": err,
        "flux_corrected": corrected,
        "flux_norm": norm,
        "quality": quality,
        "mask": mask,
        "star_id": star_ids,
        "cadence": cadences,
        "time_ccd": time_ccd,
    }


def _check_name(name: str) -> str:
    if not name or not set(name) <= _NAME_OK or name.startswith("."):
        raise ProductError(f"export name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def export_dataset(
    name: str,
    *,
    data_dir: Path | str | None = None,
    sectors: Iterable[int] | None = None,
    min_completeness: float = 0.0,
    min_snr: float = 0.0,
    bad_bits: int = DEFAULT_BAD_BITS,
    out_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export features and full time series of every star that passes the filters.

    Parameters
    ----------
    name : str
        The export's folder name under ``DIR/exports/``.
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    sectors : iterable of int, optional
        Only these sectors (default every stored target).
    min_completeness : float
        Smallest fraction of the expected cadences with a usable point (0-1).
    min_snr : float
        Smallest S/N (``variability.snr``, else median flux / median error).
    bad_bits : int
        Quality bits that make a point unusable (the ``mask`` arrays and the completeness).
    out_dir : path, optional
        Write here instead of ``DIR/exports/NAME``.
    progress : callable, optional
        ``progress(done, total, target_label)`` after each target.

    Returns
    -------
    ExportResult
    """
    if not 0.0 <= min_completeness <= 1.0:
        raise ProductError(f"--min-completeness must be within 0-1, got {min_completeness}")
    root = default_data_dir(data_dir)
    folder = Path(out_dir) if out_dir is not None else root / "exports" / _check_name(name)
    wanted = None if sectors is None else sorted({int(s) for s in sectors})
    targets = [t for t in list_targets(root, sectors=wanted)
               if (t.path(root) / "photometry.parquet").is_dir()]
    if not targets:
        which = f"sector(s) {', '.join(map(str, wanted))}" if wanted else "any sector"
        raise ProductError(f"no photometry for {which} under {root}")
    frames: list[pd.DataFrame] = []
    files: list[Path] = []
    total_before = 0
    for i, target in enumerate(targets):
        phot = load_photometry(target=target, data_dir=root,
                               columns=["star_id", "cadence", "btjd", "flux", "flux_err",
                                        "quality", "flux_corrected"])
        assert isinstance(phot, pd.DataFrame)
        stars = load_stars(target=target, data_dir=root)
        phot = with_star_times(phot, stars)
        features = target_features(target, root, photometry=phot, bad_bits=bad_bits)
        total_before += len(features)
        snr = features["snr"] if "snr" in features.columns else features["phot_snr"]
        snr = snr.fillna(features["phot_snr"]) if "phot_snr" in features.columns else snr
        keep = (features["completeness"] >= min_completeness) & (snr.fillna(0.0) >= min_snr)
        features = features[keep].sort_values("star_id").reset_index(drop=True)
        if len(features):
            ids = features["star_id"].to_numpy(dtype=np.int64)
            arrays = _timeseries(phot, stars, ids, bad_bits)
            ts_path = folder / "timeseries" / f"{target.label}.npz"
            meta = {"sector": np.int32(target.sector), "camera": np.int32(target.camera),
                    "ccd": np.int32(target.ccd)}

            def write(
                tmp: str, arrays: dict[str, Any] = arrays, meta: dict[str, Any] = meta
            ) -> None:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, **arrays, **meta)

            atomic_write(ts_path, write)
            files.append(ts_path)
            features["ts_file"] = f"timeseries/{ts_path.name}"
            features["ts_row"] = np.arange(len(features), dtype=np.int64)
            frames.append(features)
        if progress is not None:
            progress(i + 1, len(targets), target.label)
    if not frames:
        raise ProductError(
            f"no star of {total_before} passes --min-completeness {min_completeness} and "
            f"--min-snr {min_snr}"
        )
    table = pd.concat(frames, ignore_index=True)
    first = ["target", "sector", "camera", "ccd", "star_id", "ts_file", "ts_row"]
    table = table[first + [c for c in table.columns if c not in first]]
    pq_path, csv_path = folder / "features.parquet", folder / "features.csv"
    atomic_write_table(pa.Table.from_pandas(table, preserve_index=False), pq_path)
    atomic_write(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    manifest = {
        "name": name,
        "created_unix": time.time(),
        "data_dir": str(root),
        "filters": {"min_completeness": min_completeness, "min_snr": min_snr,
                    "sectors": wanted, "bad_bits": int(bad_bits)},
        "targets": [t.label for t in targets],
        "stars_considered": int(total_before),
        "stars_exported": int(len(table)),
        "features": {"files": ["features.parquet", "features.csv"],
                     "columns": list(map(str, table.columns))},
        "timeseries": {
            "files": [f"timeseries/{p.name}" for p in files],
            "arrays": {"time": "BTJD float64 (n_stars, n_cadences), the star's own "
                               "barycentric time",
                       "flux": "raw flux, e-/s float32, NaN where not measured",
                       "flux_err": "e-/s float32",
                       "flux_corrected": "flux / common-mode model, e-/s float32, NaN where "
                                         "not measured or not cleaned",
                       "flux_norm": "flux_corrected (else flux) / its median usable value",
                       "quality": "int32 bitmask, -1 where not measured",
                       "mask": "bool, True where usable", "star_id": "(n_stars,)",
                       "cadence": "(n_cadences,)",
                       "time_ccd": "(n_cadences,) BTJD of the FFI headers (the CCD centre)"},
        },
    }
    manifest_path = folder / "manifest.json"
    atomic_write_json(manifest, manifest_path)
    return ExportResult(folder=folder, features=table,
                        files=[pq_path, csv_path, *files, manifest_path],
                        targets=[t.label for t in targets],
                        n_considered=total_before)
