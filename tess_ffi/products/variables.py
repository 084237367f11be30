"""Variable-star candidates: ranked from a job's outputs, or found in light-curve files.

:func:`find_variables` reads ``candidates.parquet`` of one or more targets (every camera and
CCD of a sector unless narrowed), adds the period details of ``variability.parquet`` and a
``catalog_status`` column, filters and ranks them. :func:`analyze_files` runs the pipeline's
analysis (:func:`tess_ffi.services.analyzer.variability.analyze_lightcurve`) on light-curve
files MAST publishes (SPOC, TESS-SPOC, TGLC, QLP, TESScut/astrocut cutouts, read with
:func:`tess_ffi.services.analyzer.lightcurve_files.read_lightcurve`), one result per file and
one error line per unreadable file.

Examples
--------
>>> catalog_status(pd.DataFrame({"catalog": ["sim", "sim", "none"],
...                              "catalog_id": pd.array([5, None, None], dtype="Int64")}))
['sim 5', 'new', '-']
>>> catalog_status(pd.DataFrame({"catalog": ["tic", "tic", "tic"],
...                              "catalog_id": pd.array([7, 8, None], dtype="Int64"),
...                              "known": pd.array([True, False, None], dtype="boolean"),
...                              "vsx_name": ["V889 Aql", None, None]}))
['VSX V889 Aql', 'new', 'new']
>>> json_ready({"period": float("nan"), "n": np.int64(3)})
{'period': None, 'n': 3}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .tables import ProductError, Target, default_data_dir, list_targets

__all__ = [
    "CANDIDATE_COLUMNS",
    "FileResult",
    "catalog_status",
    "json_ready",
    "find_variables",
    "analyze_file",
    "analyze_files",
]

#: Columns of :func:`find_variables`'s table, in order (those present).
CANDIDATE_COLUMNS = [
    "rank", "target", "sector", "camera", "ccd", "star_id", "ra", "dec", "tmag", "var_class",
    "period", "epoch", "score", "amplitude", "snr", "n_points", "period_method",
    "false_alarm_probability", "catalog", "catalog_id", "catalog_tmag", "catalog_sep_arcsec",
    "tic_id", "tic_tmag", "tic_teff", "tic_sep_arcsec", "n_brighter_neighbours", "vsx_name",
    "vsx_type", "vsx_period", "known", "catalog_status",
]
Progress = Callable[[int, int, str], None]


def catalog_status(candidates: pd.DataFrame) -> list[str]:
    """Per row, what the catalogs say about a candidate.

    ``"VSX <name>"`` when a known variable (VSX) lies within the match radius; ``"new"`` when
    VSX was consulted without a match, or (no VSX columns) a catalog was searched without a
    match; ``"<catalog> <id>"`` when only the star catalog matched (``TIC`` for the TIC, or the
    simulator's ``sim``); ``"-"`` when no catalog was consulted (``none``, ``unenriched``).
    """
    n = len(candidates)

    def col(name: str) -> pd.Series:
        if name in candidates.columns:
            return candidates[name].reset_index(drop=True)
        return pd.Series([pd.NA] * n, dtype="object")

    catalog = col("catalog").astype("string").fillna("none")
    ids = pd.to_numeric(col("catalog_id"), errors="coerce")
    known = col("known").astype("boolean")
    vsx = col("vsx_name").astype("string")
    label = catalog.where(~catalog.isin(["tic", "offline"]), "TIC")
    out = np.where(ids.notna(), label + " " + ids.fillna(0).astype(np.int64).astype(str), "new")
    out = np.where(catalog.isin(["none", "unenriched", ""]), "-", out)
    has_vsx = "known" in candidates.columns
    if has_vsx:
        out = np.where(known.fillna(False).to_numpy(bool), "VSX " + vsx.fillna("?"), out)
        out = np.where((known == False).fillna(False).to_numpy(bool), "new", out)  # noqa: E712
    return [str(v) for v in out]


def json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON values: numpy scalars to Python, NaN and NA to None."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is pd.NA or value is None:
            value = None
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[str(key)] = value
    return out


def find_variables(
    sector: int,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    min_amplitude: float = 0.0,
    min_score: float = 0.0,
    classes: Iterable[str] | None = None,
    top: int | None = None,
) -> pd.DataFrame:
    """The ranked candidates of a sector (all its cameras and CCDs unless narrowed).

    Parameters
    ----------
    sector : int
        The sector.
    camera, ccd : int, optional
        Only this camera and/or CCD.
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    min_amplitude : float
        Smallest ``amplitude`` ((max - min) / median flux).
    min_score : float
        Smallest score (the pipeline already keeps only candidates scoring 0.3 or more).
    classes : iterable of str, optional
        Only these classes (``EA``, ``EW``, ``ROT``, ``DSCT``, ``TRANSIT``, ``FLARE``, ...).
    top : int, optional
        At most this many, best first.

    Returns
    -------
    DataFrame
        Columns :data:`CANDIDATE_COLUMNS` (those available), sorted by score (best first),
        ``rank`` from 1.
    """
    root = default_data_dir(data_dir)
    targets = [t for t in list_targets(root, sectors=[sector])
               if (camera is None or t.camera == camera) and (ccd is None or t.ccd == ccd)]
    if not targets:
        have = ", ".join(t.label for t in list_targets(root)) or "none"
        raise ProductError(f"no outputs for sector {sector}"
                           f"{'' if camera is None else f' camera {camera}'}"
                           f"{'' if ccd is None else f' CCD {ccd}'} under {root} (have: {have})")
    frames = []
    missing: list[Target] = []
    for t in targets:
        folder = t.path(root)
        path = folder / "candidates.parquet"
        if not path.exists():
            missing.append(t)
            continue
        cands = pd.read_parquet(path)
        var_path = folder / "variability.parquet"
        if var_path.exists():
            extra = [c for c in ("epoch", "n_points", "period_method", "false_alarm_probability")
                     if c not in cands.columns]
            var = pd.read_parquet(var_path, columns=["star_id", *extra])
            cands = cands.merge(var, on="star_id", how="left")
        cands.insert(0, "target", t.label)
        cands.insert(1, "sector", t.sector)
        cands.insert(2, "camera", t.camera)
        cands.insert(3, "ccd", t.ccd)
        frames.append(cands)
    if not frames:
        raise ProductError(
            f"no candidates yet for {', '.join(t.label for t in missing)} (candidates.parquet "
            "is written when the job completes)"
        )
    table = pd.concat(frames, ignore_index=True)
    if "catalog" in table.columns or len(table) == 0:
        table["catalog_status"] = catalog_status(table)
    keep = np.ones(len(table), dtype=bool)
    if min_amplitude:
        keep &= table["amplitude"].fillna(0.0).to_numpy() >= min_amplitude
    if min_score:
        keep &= table["score"].fillna(0.0).to_numpy() >= min_score
    if classes is not None:
        wanted = {c.strip().upper() for c in classes if c.strip()}
        keep &= table["var_class"].astype(str).str.upper().isin(wanted).to_numpy()
    table = table[keep].sort_values(["score", "target", "star_id"],
                                    ascending=[False, True, True], kind="stable")
    if top is not None:
        if top < 1:
            raise ProductError(f"--top must be at least 1, got {top}")
        table = table.head(top)
    table = table.reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    cols = [c for c in CANDIDATE_COLUMNS if c in table.columns]
    return table[cols + [c for c in table.columns if c not in cols]]


@dataclass
class FileResult:
    """The analysis of one file (``result``), or why it failed (``error``)."""

    source: str
    result: dict[str, Any] | None = None
    error: str | None = None


def analyze_file(path: Path | str) -> dict[str, Any]:
    """Read one light-curve file and analyse it.

    Returns a dict with ``source`` (the path as given), the file's identity (``object``,
    ``tic_id``, ``sector``, ``camera``, ``ccd``, ``ra``, ``dec``, ``format``,
    ``flux_column``, ``cadence_s``, ``n_rows``) and every field of
    :class:`~tess_ffi.services.analyzer.variability.VariabilityResult` (``period`` in days,
    ``epoch`` BTJD, ``var_class``, ``score``, ``n_points`` good points, ...). Raises
    ValueError (one line naming the file) when the file cannot be read.
    """
    from tess_ffi.services.analyzer.lightcurve_files import read_lightcurve
    from tess_ffi.services.analyzer.variability import analyze_lightcurve

    lc = read_lightcurve(path)
    result = analyze_lightcurve(lc.time, lc.flux, lc.flux_err, lc.quality)
    meta = lc.meta
    record: dict[str, Any] = {"source": str(path)}
    for key in ("object", "tic_id", "sector", "camera", "ccd", "ra", "dec", "format",
                "flux_column", "cadence_s"):
        record[key] = meta.get(key)
    record["n_rows"] = len(lc)
    record.update(result.to_dict())
    return json_ready(record)


def analyze_files(
    paths: Sequence[Path | str], *, progress: Progress | None = None
) -> list[FileResult]:
    """:func:`analyze_file` on each path, in order; a failure is recorded, not raised."""
    out: list[FileResult] = []
    for i, path in enumerate(paths):
        try:
            out.append(FileResult(str(path), result=analyze_file(path)))
        except (ValueError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            name = Path(str(path)).name
            if message.startswith(f"{name}:"):
                message = f"{path}:{message[len(name) + 1:]}"
            elif not message.startswith(str(path)):
                message = f"{path}: {message}"
            out.append(FileResult(str(path), error=message))
        if progress is not None:
            progress(i + 1, len(paths), Path(str(path)).name)
    return out
