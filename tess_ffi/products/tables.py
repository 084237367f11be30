"""Loading the pipeline's Parquet outputs as pandas or astropy tables.

Every job writes its outputs under ``DIR/tess/sector_SSS/camC_ccdD/`` (see
:func:`tess_ffi.shared.config.output_dir`); a :class:`Target` names one of those folders. The
loaders here read them back: the star list, the photometry (all of it, or some stars), one
star's light curve, the variability table and the candidates. Per-star statistics of the
photometry are computed in one vectorised pass (:func:`lightcurve_stats`).

Two rules every product shares, each in one helper:

* :func:`best_flux`: the cleaned flux (``flux_corrected``, the raw flux divided by the
  aggregator's common-mode model) where a frame has one, with the error scaled alike, else
  the raw flux;
* :func:`star_time_offsets` / :func:`with_star_times`: the stored ``btjd`` is the FFI header's
  time, barycentric for the CCD's centre; a star's own barycentric time adds the offset of
  :class:`~tess_ffi.shared.timing.BarycentricCorrection` for the CCD reference direction
  located from the whole star list (the rule the aggregator applies to the light curves it
  sends to the analyzer).

Examples
--------
>>> Target(70, 1, 2).label
's0070-1-2'
>>> Target.parse("s0070-1-2")
Target(sector=70, camera=1, ccd=2)
>>> import numpy as np
>>> ids, starts, stops = group_bounds(np.array([3, 3, 5, 9, 9, 9]))
>>> ids.tolist(), starts.tolist(), stops.tolist()
([3, 5, 9], [0, 2, 3], [2, 3, 6])
>>> lc = pd.DataFrame({"flux": [100.0, 50.0], "flux_err": [2.0, 1.0],
...                    "flux_corrected": [110.0, np.nan]})
>>> flux, err = best_flux(lc)
>>> flux.tolist(), err.tolist()
([110.0, 50.0], [2.2, 1.0])
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tess_ffi.shared.config import output_dir
from tess_ffi.shared.contracts import STORED_PHOTOMETRY_COLUMNS, STORED_PHOTOMETRY_SCHEMA
from tess_ffi.shared.lightcurve import corrected_flux
from tess_ffi.shared.quality import DEFAULT_BAD_BITS, good_mask
from tess_ffi.shared.timing import BarycentricCorrection

__all__ = [
    "ProductError",
    "Target",
    "default_data_dir",
    "list_targets",
    "resolve_target",
    "target_dir",
    "read_job_state",
    "expected_cadences",
    "stored_cadences",
    "load_stars",
    "load_photometry",
    "load_lightcurve",
    "load_variability",
    "load_candidates",
    "star_row",
    "find_star_by_tic",
    "group_bounds",
    "lightcurve_stats",
    "flux_to_mag",
    "best_flux",
    "flux_label",
    "star_time_offsets",
    "with_star_times",
    "PHOTOMETRY_COLUMNS",
]

#: Columns of ``photometry.parquet`` (one row per star and cadence): the stored schema,
#: :data:`~tess_ffi.shared.contracts.STORED_PHOTOMETRY_COLUMNS` (an alias of it).
PHOTOMETRY_COLUMNS = STORED_PHOTOMETRY_COLUMNS

_SECTOR_DIR = re.compile(r"^sector_(\d{3,})$")
_TARGET_DIR = re.compile(r"^cam([1-4])_ccd([1-4])$")
_LABEL = re.compile(r"^s(\d+)-([1-4])-([1-4])$")
_CADENCE_FILE = re.compile(r"^cadence-(\d{6,})\.parquet$")
_COMPACT_FILE = re.compile(r"^compact-[0-9a-f]+\.parquet$")


class ProductError(ValueError):
    """A user-facing problem with the outputs (missing file, unknown star): one clear line."""


@dataclass(frozen=True, order=True)
class Target:
    """One sector/camera/CCD: the unit of a job and of its output folder."""

    sector: int
    camera: int
    ccd: int

    @property
    def label(self) -> str:
        """``sSSSS-C-D``, the job id of the pipeline (``s0070-1-2``)."""
        return f"s{self.sector:04d}-{self.camera}-{self.ccd}"

    @classmethod
    def parse(cls, label: str) -> Target:
        """The inverse of :attr:`label`."""
        m = _LABEL.match(label.strip())
        if not m:
            raise ProductError(f"not a target label (sSSSS-C-D): {label!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def path(self, data_dir: Path | str) -> Path:
        """The output folder of this target under ``data_dir``."""
        return output_dir(data_dir, self.sector, self.camera, self.ccd)


def default_data_dir(data_dir: Path | str | None = None) -> Path:
    """``data_dir``, else ``TESS_FFI_DATA_DIR``, else ``./data`` (as the command line does).

    >>> default_data_dir("/tmp/x").as_posix()
    '/tmp/x'
    """
    if data_dir is not None:
        return Path(data_dir)
    from tess_ffi.shared.config import load_settings

    return Path(load_settings().data_dir)


def list_targets(
    data_dir: Path | str | None = None, *, sectors: Iterable[int] | None = None
) -> list[Target]:
    """Targets with outputs under ``data_dir`` (a star list or a job state), sorted.

    ``sectors`` keeps only those sectors. A missing ``data_dir`` gives an empty list.
    """
    root = default_data_dir(data_dir) / "tess"
    wanted = None if sectors is None else {int(s) for s in sectors}
    found: list[Target] = []
    if not root.is_dir():
        return found
    for sector_entry in os.scandir(root):
        m = _SECTOR_DIR.match(sector_entry.name)
        if not (m and sector_entry.is_dir()):
            continue
        sector = int(m.group(1))
        if wanted is not None and sector not in wanted:
            continue
        for entry in os.scandir(sector_entry.path):
            t = _TARGET_DIR.match(entry.name)
            if not (t and entry.is_dir()):
                continue
            folder = Path(entry.path)
            if (folder / "stars.parquet").exists() or (folder / "job.json").exists():
                found.append(Target(sector, int(t.group(1)), int(t.group(2))))
    return sorted(found)


def resolve_target(
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
) -> Target:
    """The one target with outputs that matches the given (possibly partial) selection.

    With everything given the target must exist; with parts missing exactly one stored
    target must match, else :class:`ProductError` lists the choices.
    """
    targets = [
        t
        for t in list_targets(data_dir)
        if (sector is None or t.sector == sector)
        and (camera is None or t.camera == camera)
        and (ccd is None or t.ccd == ccd)
    ]
    wanted = " ".join(
        f"{name} {value}"
        for name, value in (("sector", sector), ("camera", camera), ("CCD", ccd))
        if value is not None
    ) or "any sector"
    where = default_data_dir(data_dir)
    if not targets:
        have = ", ".join(t.label for t in list_targets(data_dir)) or "none"
        raise ProductError(f"no outputs for {wanted} under {where} (have: {have})")
    if len(targets) > 1:
        raise ProductError(
            f"{wanted} matches {len(targets)} outputs under {where} "
            f"({', '.join(t.label for t in targets)}): give --sector, --camera and --ccd"
        )
    return targets[0]


def target_dir(target: Target, data_dir: Path | str | None = None) -> Path:
    """The output folder of ``target``; :class:`ProductError` when it does not exist."""
    folder = target.path(default_data_dir(data_dir))
    if not folder.is_dir():
        raise ProductError(f"no outputs for {target.label}: {folder} does not exist")
    return folder


def _target(
    target: Target | None,
    sector: int | None,
    camera: int | None,
    ccd: int | None,
    data_dir: Path | str | None,
) -> Target:
    if target is not None:
        return target
    return resolve_target(sector, camera, ccd, data_dir=data_dir)


def read_job_state(target: Target, data_dir: Path | str | None = None) -> dict[str, Any]:
    """The job's ``job.json`` (expected and failed cadences, ...), or ``{}`` when absent."""
    path = target.path(default_data_dir(data_dir)) / "job.json"
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: unreadable job state ({exc})") from None


def stored_cadences(target: Target, data_dir: Path | str | None = None) -> list[int]:
    """Cadences with stored photometry: per-cadence files while a job runs, and the cadences
    compacted into star-major files when it completed (from ``job.json``, else read from the
    compacted files' ``cadence`` column)."""
    folder = target.path(default_data_dir(data_dir)) / "photometry.parquet"
    if not folder.is_dir():
        return []
    found: set[int] = set()
    compact: list[str] = []
    for entry in os.scandir(folder):
        if m := _CADENCE_FILE.match(entry.name):
            found.add(int(m.group(1)))
        elif _COMPACT_FILE.match(entry.name):
            compact.append(entry.path)
    if compact:
        listed = read_job_state(target, data_dir).get("compacted_cadences")
        if isinstance(listed, list):
            found.update(int(c) for c in listed)
        else:
            for path in compact:
                column = pq.read_table(path, columns=["cadence"]).column("cadence")
                found.update(pc.unique(column).to_pylist())
    return sorted(found)


def expected_cadences(target: Target, data_dir: Path | str | None = None) -> int:
    """How many cadences the job expected (``job.json``), else how many are stored."""
    state = read_job_state(target, data_dir)
    expected = state.get("expected")
    if isinstance(expected, list) and expected:
        return len(expected)
    return len(stored_cadences(target, data_dir))


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise ProductError(f"no {what} in {path.parent} ({path.name} is missing; has the job "
                           "finished?)")
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise ProductError(f"{path}: unreadable Parquet ({exc})") from None


def load_stars(
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Target | None = None,
) -> pd.DataFrame:
    """The star list (``stars.parquet``): star_id, ra, dec, x, y, tmag, tic_id."""
    t = _target(target, sector, camera, ccd, data_dir)
    return _read_parquet(target_dir(t, data_dir) / "stars.parquet", "star list")


def load_variability(
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Target | None = None,
) -> pd.DataFrame:
    """Every star's variability metrics, period, class and score (``variability.parquet``)."""
    t = _target(target, sector, camera, ccd, data_dir)
    return _read_parquet(target_dir(t, data_dir) / "variability.parquet", "variability table")


def load_candidates(
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Target | None = None,
) -> pd.DataFrame:
    """The ranked candidates with their catalog match (``candidates.parquet``), best first."""
    t = _target(target, sector, camera, ccd, data_dir)
    return _read_parquet(target_dir(t, data_dir) / "candidates.parquet", "candidates")


def load_photometry(
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    star_ids: Sequence[int] | npt.ArrayLike | None = None,
    columns: Sequence[str] | None = None,
    data_dir: Path | str | None = None,
    target: Target | None = None,
    as_arrow: bool = False,
) -> pd.DataFrame | pa.Table:
    """Photometry rows (all stars, or ``star_ids``), sorted by star and time.

    The rows are as stored: ``btjd`` is the FFI header's time (barycentric for the CCD's
    centre, see :func:`with_star_times`), and ``flux_corrected`` is null (NaN in pandas)
    where the light curves were not cleaned yet (per-cadence files of a running job).

    Parameters
    ----------
    sector, camera, ccd : int, optional
        The target; parts may be left out when only one stored target matches.
    star_ids : sequence of int, optional
        Only these stars (read with a filter, so only their rows are materialised).
    columns : sequence of str, optional
        A subset of :data:`PHOTOMETRY_COLUMNS` (``star_id`` and ``btjd`` are always read).
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    as_arrow : bool
        Return a :class:`pyarrow.Table` instead of a :class:`pandas.DataFrame`.
    """
    t = _target(target, sector, camera, ccd, data_dir)
    folder = target_dir(t, data_dir) / "photometry.parquet"
    if not folder.is_dir():
        raise ProductError(f"no photometry stored for {t.label} ({folder} is missing)")
    cols = list(PHOTOMETRY_COLUMNS if columns is None else columns)
    for needed in ("btjd", "star_id"):
        if needed not in cols:
            cols.insert(0, needed)
    unknown = [c for c in cols if c not in PHOTOMETRY_COLUMNS]
    if unknown:
        raise ProductError(f"unknown photometry column(s) {unknown}; have {PHOTOMETRY_COLUMNS}")
    flt = None
    if star_ids is not None:
        ids = np.unique(np.asarray(star_ids, dtype=np.int64))
        flt = pc.field("star_id").isin(pa.array(ids))
    try:
        # One schema for every file: per-cadence files without flux_corrected read it as null.
        dataset = ds.dataset(folder, format="parquet", schema=STORED_PHOTOMETRY_SCHEMA)
        table = dataset.to_table(columns=cols, filter=flt)
    except (OSError, pa.ArrowException) as exc:
        raise ProductError(f"{folder}: unreadable photometry ({exc})") from None
    table = table.sort_by([("star_id", "ascending"), ("btjd", "ascending")])
    return table if as_arrow else table.to_pandas()


def star_row(stars: pd.DataFrame, star_id: int, where: str = "") -> pd.Series:
    """The row of ``star_id`` in a star-indexed table; :class:`ProductError` when absent."""
    rows = stars[stars["star_id"] == int(star_id)]
    if rows.empty:
        raise ProductError(f"no star {star_id}{' in ' + where if where else ''} "
                           f"(star ids run {stars['star_id'].min()}-{stars['star_id'].max()})")
    return rows.iloc[0]


def find_star_by_tic(
    tic_id: int,
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Target | None = None,
) -> int:
    """The star id of TIC ``tic_id``: from ``stars.parquet``'s ``tic_id``, else from a
    candidate's TIC cross-match (``candidates.parquet``: ``tic_id``, or ``catalog_id`` of the
    ``tic``/``offline`` catalog)."""
    t = _target(target, sector, camera, ccd, data_dir)
    stars = load_stars(target=t, data_dir=data_dir)
    if "tic_id" in stars.columns:
        hit = stars[pd.to_numeric(stars["tic_id"], errors="coerce") == float(tic_id)]
        if not hit.empty:
            return int(hit["star_id"].iloc[0])
    path = target_dir(t, data_dir) / "candidates.parquet"
    if path.exists():
        cands = pq.read_table(path).to_pandas()
        hits = pd.Series(False, index=cands.index)
        if "tic_id" in cands.columns:
            hits |= pd.to_numeric(cands["tic_id"], errors="coerce") == float(tic_id)
        if {"catalog", "catalog_id"} <= set(cands.columns):
            tic = cands["catalog"].astype(str).str.lower().isin(["tic", "offline"])
            hits |= tic & (pd.to_numeric(cands["catalog_id"], errors="coerce") == float(tic_id))
        if hits.any():
            return int(cands.loc[hits, "star_id"].iloc[0])
    raise ProductError(f"TIC {tic_id} is not among the stars of {t.label} (no tic_id or TIC "
                       "cross-match names it)")


def best_flux(
    lc: pd.DataFrame | Any,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The flux to show and analyse: corrected where a frame has one, else raw.

    Parameters
    ----------
    lc : DataFrame or table
        Rows with ``flux``, ``flux_err`` and optionally ``flux_corrected`` (anything indexable
        by column name: a DataFrame, an astropy or a dict of arrays).

    Returns
    -------
    flux, flux_err : ndarray of float64
        ``flux_corrected`` and ``flux_err * |flux_corrected / flux|`` (the error scaled as the
        flux was, as the analyzer does) where ``flux_corrected`` and that ratio are finite;
        the raw ``flux`` and ``flux_err`` elsewhere (and everywhere without the column).
    """
    try:
        raw = np.asarray(lc["flux"], dtype=np.float64)
        err = np.asarray(lc["flux_err"], dtype=np.float64)
    except KeyError:
        raise ProductError("a light curve needs columns flux and flux_err") from None
    corrected = lc["flux_corrected"] if "flux_corrected" in _column_names(lc) else None
    return corrected_flux(raw, err, corrected)


def flux_label(lc: pd.DataFrame | Any) -> str:
    """What :func:`best_flux` gives for ``lc``, for plot labels: ``"corrected flux"``,
    ``"raw flux"`` or, when only some frames are corrected, ``"corrected flux (raw where not
    cleaned)"``.

    >>> flux_label(pd.DataFrame({"flux": [1.0, 2.0], "flux_corrected": [1.0, np.nan]}))
    'corrected flux (raw where not cleaned)'
    >>> flux_label({"flux": [1.0]})
    'raw flux'
    """
    if "flux_corrected" not in _column_names(lc):
        return "raw flux"
    measured = np.isfinite(np.asarray(lc["flux"], dtype=np.float64))
    corrected = np.isfinite(np.asarray(lc["flux_corrected"], dtype=np.float64))[measured]
    if corrected.size == 0 or not corrected.any():
        return "raw flux"
    return "corrected flux" if corrected.all() else "corrected flux (raw where not cleaned)"


def _column_names(lc: Any) -> set[str]:
    names = getattr(lc, "colnames", None)  # astropy tables
    if names is None:
        names = getattr(lc, "columns", None)  # pandas
    return {str(n) for n in (names if names is not None else lc.keys())}


def star_time_offsets(
    stars: pd.DataFrame, star_ids: npt.ArrayLike, btjd: npt.ArrayLike
) -> npt.NDArray[np.float64] | None:
    """Days to add to FFI header times to get each star's own barycentric time.

    The header's times are barycentric for the CCD's centre. Its direction is located from
    the whole star list (:func:`~tess_ffi.shared.timing.ccd_reference_direction` of every
    star's ``x``, ``y``, ``ra``, ``dec``) and the offsets are
    :meth:`~tess_ffi.shared.timing.BarycentricCorrection.offsets_days`: the same rule as the
    light curves the aggregator sends to the analyzer.

    Parameters
    ----------
    stars : DataFrame
        The target's star list (``star_id``, ``ra``, ``dec``, ``x``, ``y``), all of it.
    star_ids : array_like of int
        The stars wanted (each must be in ``stars``).
    btjd : array_like of float
        Header times (BTJD); non-finite times get NaN offsets.

    Returns
    -------
    ndarray of float64, shape (len(star_ids), len(btjd)), or None
        None when the star list has fewer than 3 stars with finite positions (the CCD's
        centre cannot be located): the header times are then left as they are.
    """
    missing = {"star_id", "ra", "dec", "x", "y"} - set(stars.columns)
    if missing:
        raise ProductError(f"the star list lacks column(s) {sorted(missing)}")
    t = np.asarray(btjd, dtype=np.float64).ravel()
    x, y, ra, dec = (stars[c].to_numpy(dtype=np.float64) for c in ("x", "y", "ra", "dec"))
    finite = np.isfinite(t)
    correction = BarycentricCorrection.for_star_list(t[finite], x, y, ra, dec)
    if correction is None or t.size == 0:
        return None
    all_ids = stars["star_id"].to_numpy(dtype=np.int64)
    order = np.argsort(all_ids, kind="stable")
    ids = np.asarray(star_ids, dtype=np.int64).ravel()
    at = order[np.clip(np.searchsorted(all_ids[order], ids), 0, order.size - 1)]
    unknown = all_ids[at] != ids
    if unknown.any():
        raise ProductError(f"star id(s) {ids[unknown][:5].tolist()} are not in the star list")
    out = np.full((ids.size, t.size), np.nan)
    out[:, finite] = correction.offsets_days(ra[at], dec[at])
    return out


def with_star_times(photometry: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """Photometry rows with each star's own barycentric time.

    ``btjd`` becomes the star's time (header time plus :func:`star_time_offsets`) and
    ``btjd_ccd`` (inserted after it) keeps the header's. A frame that already has
    ``btjd_ccd`` is recomputed from it, so applying this twice changes nothing. With fewer
    than 3 located stars the times stay the header's. ``attrs["time_reference"]`` of the
    result says which: ``"star"`` or ``"ccd"``.

    Parameters
    ----------
    photometry : DataFrame
        Rows with ``star_id`` and ``btjd`` (header times).
    stars : DataFrame
        The target's whole star list.
    """
    base_col = "btjd_ccd" if "btjd_ccd" in photometry.columns else "btjd"
    header = photometry[base_col].to_numpy(dtype=np.float64)
    grid, col = np.unique(header, return_inverse=True)
    ids, row = np.unique(photometry["star_id"].to_numpy(dtype=np.int64), return_inverse=True)
    offsets = star_time_offsets(stars, ids, grid)
    out = photometry.drop(columns=["btjd_ccd"], errors="ignore")
    out["btjd"] = header if offsets is None else header + offsets[row.ravel(), col.ravel()]
    out.insert(int(out.columns.get_loc("btjd")) + 1, "btjd_ccd", header)
    out.attrs["time_reference"] = "ccd" if offsets is None else "star"
    return out


def load_lightcurve(
    star_id: int,
    sector: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    *,
    data_dir: Path | str | None = None,
    target: Target | None = None,
    good_only: bool = False,
    bad_bits: int = DEFAULT_BAD_BITS,
    format: Literal["pandas", "astropy"] = "pandas",
) -> Any:
    """One star's light curve, sorted by time.

    Parameters
    ----------
    star_id : int
        The star (``star_id`` of ``stars.parquet``).
    sector, camera, ccd : int, optional
        The target; parts may be left out when only one stored target matches.
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    good_only : bool
        Keep only the rows where ``good`` is True.
    bad_bits : int
        Quality bits that make a point not ``good``.
    format : {"pandas", "astropy"}
        A :class:`pandas.DataFrame`, or an :class:`astropy.table.Table` with units and the
        star's metadata in ``meta``.

    Returns
    -------
    DataFrame or Table
        Columns ``cadence``; ``btjd``, the star's own barycentric time (BTJD = BJD_TDB -
        2457000: the FFI header's time, which is for the CCD's centre, plus the star's offset
        of up to about a minute, see :func:`with_star_times`); ``btjd_ccd``, the header's
        time; ``flux``, ``flux_err`` (raw aperture flux, e-/s); ``bkg``; ``x``, ``y``;
        ``quality``; ``flux_corrected`` (the flux divided by the aggregator's common-mode
        model, e-/s; NaN where the light curve is not cleaned yet; :func:`best_flux` picks
        it); ``good`` (none of ``bad_bits`` set in ``quality``). With fewer than 3 stars in
        the star list (or none stored) ``btjd`` equals ``btjd_ccd``. The astropy form's
        ``meta`` holds sector, camera, ccd, star_id, ra, dec, tmag, tic_id, ``time_format``
        and ``time_reference`` (``"star"``, or ``"ccd"`` when the times are the header's).
    """
    if format not in ("pandas", "astropy"):
        raise ProductError(f"format must be 'pandas' or 'astropy', got {format!r}")
    t = _target(target, sector, camera, ccd, data_dir)
    stars_path = target_dir(t, data_dir) / "stars.parquet"
    stars = _read_parquet(stars_path, "star list") if stars_path.exists() else None
    lc = load_photometry(target=t, data_dir=data_dir, star_ids=[int(star_id)])
    assert isinstance(lc, pd.DataFrame)
    if lc.empty:
        star_row(stars if stars is not None else load_stars(target=t, data_dir=data_dir),
                 star_id, t.label)  # raises for an unknown star
        raise ProductError(f"star {star_id} of {t.label} has no photometry")
    star = None if stars is None else star_row(stars, star_id, t.label)
    if stars is not None:
        lc = with_star_times(lc, stars)
    else:
        lc.insert(int(lc.columns.get_loc("btjd")) + 1, "btjd_ccd", lc["btjd"].to_numpy())
    time_reference = lc.attrs.get("time_reference", "ccd")
    lc = lc.drop(columns=["star_id"]).sort_values("btjd", kind="stable").reset_index(drop=True)
    lc["good"] = good_mask(lc["quality"].to_numpy(), bad_bits)
    if good_only:
        lc = lc[lc["good"]].reset_index(drop=True)
    lc.attrs["time_reference"] = time_reference
    if format == "pandas":
        return lc
    from astropy import units as u
    from astropy.table import Table

    table = Table.from_pandas(lc)
    e_s = u.electron / u.s
    for col, unit in (("btjd", u.day), ("btjd_ccd", u.day), ("flux", e_s), ("flux_err", e_s),
                      ("flux_corrected", e_s), ("bkg", e_s), ("x", u.pix), ("y", u.pix)):
        if col in table.colnames:
            table[col].unit = unit
    meta: dict[str, Any] = {"sector": t.sector, "camera": t.camera, "ccd": t.ccd,
                            "star_id": int(star_id), "time_format": "btjd (BJD - 2457000, TDB)",
                            "time_reference": time_reference}
    if star is not None:
        for key in ("ra", "dec", "tmag", "tic_id"):
            if key in star.index and pd.notna(star[key]):
                meta[key] = float(star[key]) if key != "tic_id" else int(star[key])
    table.meta.update(meta)
    return table


def group_bounds(
    sorted_ids: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Unique ids of an id-sorted column and the [start, stop) row range of each.

    The building block of every per-star computation here: sort once, then slice.
    """
    ids = np.asarray(sorted_ids)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.r_[0, change].astype(np.int64)
    stops = np.r_[change, ids.size].astype(np.int64)
    return ids[starts].astype(np.int64), starts, stops


def flux_to_mag(flux: npt.ArrayLike, reference: float | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Magnitudes relative to ``reference`` flux: ``-2.5 log10(flux / reference)``.

    Non-positive fluxes give NaN.

    >>> flux_to_mag([100.0, 10.0, -1.0], 100.0).round(2).tolist()
    [-0.0, 2.5, nan]
    """
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = f / np.asarray(reference, dtype=np.float64)
        return np.where(ratio > 0, -2.5 * np.log10(np.where(ratio > 0, ratio, 1.0)), np.nan)


def lightcurve_stats(
    photometry: pd.DataFrame,
    n_expected: int | None = None,
    *,
    bad_bits: int = DEFAULT_BAD_BITS,
) -> pd.DataFrame:
    """Per-star summary statistics of photometry rows, in one vectorised pass.

    Parameters
    ----------
    photometry : DataFrame
        Rows with at least star_id, btjd, flux, flux_err, quality (any order).
    n_expected : int, optional
        The job's expected number of cadences (the denominator of ``completeness``); default
        the number of distinct cadences (or times) present.
    bad_bits : int
        Quality bits that make a point unusable.

    Returns
    -------
    DataFrame
        One row per star: ``n_points`` (rows), ``n_good``, ``completeness`` (n_good /
        n_expected), ``btjd_start``, ``btjd_end``, ``median_flux``, ``mean_flux``,
        ``std_flux``, ``min_flux``, ``max_flux``, ``p5_flux``, ``p95_flux``,
        ``amplitude_robust`` ((p95 - p5) / median), ``mad_flux``, ``rms_ppm`` (robust scatter,
        1.4826 MAD / median, parts per million), ``p2p_ppm`` (point-to-point scatter),
        ``median_flux_err``, ``snr`` (median flux / median error), ``median_bkg`` (when
        ``bkg`` is present), ``x_std``, ``y_std`` (when ``x``, ``y`` are present). Statistics
        use good points only; a star without any has NaN statistics.

    Examples
    --------
    >>> df = pd.DataFrame({"star_id": [1, 1, 1, 2, 2, 2], "btjd": [0., 1, 2, 0, 1, 2],
    ...                    "flux": [100., 102, 98, 50, 50, 50], "flux_err": [1.] * 6,
    ...                    "quality": [0, 0, 0, 0, 32, 0]})
    >>> s = lightcurve_stats(df)
    >>> s["n_good"].tolist(), s["completeness"].round(3).tolist(), s["snr"].tolist()
    ([3, 2], [1.0, 0.667], [100.0, 50.0])
    """
    need = {"star_id", "btjd", "flux", "flux_err", "quality"}
    missing = need - set(photometry.columns)
    if missing:
        raise ProductError(f"photometry lacks column(s) {sorted(missing)}")
    order = np.lexsort((photometry["btjd"].to_numpy(), photometry["star_id"].to_numpy()))
    df = photometry.iloc[order]
    sid = df["star_id"].to_numpy()
    ids, starts, stops = group_bounds(sid)
    n_points = (stops - starts).astype(np.int64)
    flux = df["flux"].to_numpy(dtype=np.float64)
    good = good_mask(df["quality"].to_numpy(), bad_bits) & np.isfinite(flux)
    if n_expected is None:
        key = "cadence" if "cadence" in df.columns else "btjd"
        n_expected = int(pd.unique(df[key]).size)
    g = df[good]
    keyed = pd.DataFrame({
        "star_id": g["star_id"].to_numpy(),
        "btjd": g["btjd"].to_numpy(dtype=np.float64),
        "flux": g["flux"].to_numpy(dtype=np.float64),
        "flux_err": g["flux_err"].to_numpy(dtype=np.float64),
    })
    for extra in ("bkg", "x", "y"):
        if extra in g.columns:
            keyed[extra] = g[extra].to_numpy(dtype=np.float64)
    grouped = keyed.groupby("star_id", sort=True)
    agg = grouped.agg(
        n_good=("flux", "size"),
        btjd_start=("btjd", "min"),
        btjd_end=("btjd", "max"),
        median_flux=("flux", "median"),
        mean_flux=("flux", "mean"),
        std_flux=("flux", "std"),
        min_flux=("flux", "min"),
        max_flux=("flux", "max"),
        median_flux_err=("flux_err", "median"),
    )
    q = grouped["flux"].quantile([0.05, 0.95]).unstack()
    agg["p5_flux"] = q[0.05]
    agg["p95_flux"] = q[0.95]
    dev = (keyed["flux"] - grouped["flux"].transform("median")).abs()
    agg["mad_flux"] = dev.groupby(keyed["star_id"]).median()
    # Point-to-point scatter: differences of consecutive good points of the same star.
    same = keyed["star_id"].to_numpy()
    d = np.diff(keyed["flux"].to_numpy())
    within = same[1:] == same[:-1]
    p2p = pd.Series(np.abs(d[within]), index=same[1:][within])
    p2p_med = p2p.groupby(level=0).median()
    if "bkg" in keyed.columns:
        agg["median_bkg"] = grouped["bkg"].median()
    for axis in ("x", "y"):
        if axis in keyed.columns:
            agg[f"{axis}_std"] = grouped[axis].std()
    out = pd.DataFrame({"star_id": ids, "n_points": n_points})
    out = out.merge(agg.reset_index(), on="star_id", how="left")
    out["n_good"] = out["n_good"].fillna(0).astype(np.int64)
    out["completeness"] = out["n_good"] / max(int(n_expected), 1)
    med = out["median_flux"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = med > 0
        out["amplitude_robust"] = np.where(pos, (out["p95_flux"] - out["p5_flux"]) / med, np.nan)
        out["rms_ppm"] = np.where(pos, 1.4826 * out["mad_flux"] / med * 1e6, np.nan)
        p2p_arr = out["star_id"].map(p2p_med).to_numpy(dtype=np.float64)
        # median |diff| of Gaussian noise is 0.6745 * sqrt(2) sigma
        out["p2p_ppm"] = np.where(pos, p2p_arr / (0.6745 * math.sqrt(2.0)) / med * 1e6, np.nan)
        err = out["median_flux_err"].to_numpy(dtype=np.float64)
        out["snr"] = np.where(pos & (err > 0), med / err, np.nan)
    first = ["star_id", "n_points", "n_good", "completeness"]
    return out[first + [c for c in out.columns if c not in first]]
