"""The aggregator's light-curve cleaning, applied chunk by chunk of stars.

:mod:`.cleaning` holds the science, as functions of ``(n_stars, n_cadences)`` matrices. A
sector of 10,000 stars x 10,000 cadences does not fit in memory as one matrix, so the
aggregator cleans in two steps:

1. :meth:`LightCurveCleaner.select` reads a seeded sample of the stars (at most
   :data:`REFERENCE_VALUES` measurements), picks the quiet ones as the reference ensemble
   (:func:`.cleaning.select_reference`: the CCD's common mode and its cotrending basis) and
   finds the bad epochs once, on the reference stars' corrected flux (a cadence where every
   quiet star is noisy is bad for every star);
2. :meth:`LightCurveCleaner.clean` then corrects each chunk of star-sorted photometry as
   the light-curve pass reads it: ``flux_corrected = flux / model`` (the star's own mix of
   its neighbours' common mode and the basis), ``BAD_EPOCH`` on the bad epochs and
   ``OUTLIER`` on isolated single-point outliers (eclipses and flares are kept). The raw
   flux is never changed.

Each star's aperture is chosen in step 2 (:func:`choose_apertures`): the photometer measures
every star with radii of 1.5, 2 and 3 px, each is corrected (the reference is the default
2-px aperture's; each aperture gets its own fit), and the light curve kept is the one whose
corrected point-to-point scatter (relative to its median) is lowest; ``aperture_radius``
records it.
Faint, background-limited stars then get the small aperture; bright ones the large one,
whose flux depends less on where the star falls within a pixel. Once a star's light curve
has been built the choice is kept: cadences added later use the same radius.

The result does not depend on how the stars are chunked: the reference, its basis and the
bad epochs are fixed before the first chunk, and each star's aperture and correction use only
them and its own light curve.

Examples
--------
>>> import numpy as np, pyarrow as pa
>>> rng = np.random.default_rng(0)
>>> n, c = 80, 300
>>> trend = 1 + 0.01 * np.sin(np.arange(c) / 15.0)           # seen by every star
>>> flux = 1000 * trend * (1 + 0.001 * rng.standard_normal((n, c)))
>>> table = pa.table({"star_id": np.repeat(np.arange(1, n + 1), c),
...                   "cadence": np.tile(np.arange(c), n),
...                   "btjd": np.tile(1500 + np.arange(c) / 48, n),
...                   "flux": flux.ravel().astype(np.float32),
...                   "flux_err": np.ones(n * c, np.float32),
...                   "quality": np.zeros(n * c, np.int32)})
>>> stars = pa.table({"star_id": np.arange(1, n + 1), "x": rng.uniform(50, 2000, n),
...                   "y": rng.uniform(50, 2000, n), "tmag": np.full(n, 11.0)})
>>> cleaner = LightCurveCleaner.select(table, stars)
>>> out = cleaner.clean(table)
>>> corrected = out.column("flux_corrected").to_numpy().reshape(n, c)
>>> bool(np.median(np.std(corrected / corrected.mean(1, keepdims=True), axis=1)) < 0.0012)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tess_ffi.shared.contracts import APERTURE_RADII
from tess_ffi.shared.quality import CLEANING_BITS, QualityFlags

from .cleaning import (
    CLEANING_BAD_BITS,
    ReferenceEnsemble,
    clip_outliers,
    common_mode,
    common_mode_many,
    epoch_quality,
    good_points,
    normalise,
    select_reference,
    star_quality,
    window_mask,
)

__all__ = [
    "REFERENCE_VALUES",
    "DEFAULT_APERTURE_RADIUS",
    "CadenceGrid",
    "LightCurveCleaner",
    "choose_apertures",
    "reference_sample",
]

#: Most measurements (stars x cadences) read to select the reference ensemble: 4e6 keeps
#: each working matrix at 32 MB; at 10,000 cadences that is 400 stars, about 250 quiet
#: references spread over the CCD, which is plenty for a common mode that varies smoothly.
REFERENCE_VALUES = 4_000_000
#: Reference stars per star (the local common mode's neighbours).
N_NEIGHBOURS = 30
#: Radius (px) of the photometer's ``flux`` column, the aperture kept when no other is better.
DEFAULT_APERTURE_RADIUS = 2.0
#: An aperture competes only with at least this fraction of the default one's usable points.
_MIN_APERTURE_COMPLETENESS = 0.8
#: The bad bits of the cleaning, without its own (stale) ones: they are recomputed.
_INPUT_BAD_BITS = CLEANING_BAD_BITS & ~CLEANING_BITS


def reference_sample(star_ids: npt.ArrayLike, n_cadences: int, *,
                     max_values: int = REFERENCE_VALUES, seed: int = 0) -> npt.NDArray[np.int64]:
    """The stars whose light curves are read to select the reference ensemble.

    Every star when they fit in ``max_values`` measurements, else a seeded random subset
    (sorted): the same ids on every run, so a rerun gives the same correction.

    Examples
    --------
    >>> reference_sample(np.arange(10), 100).tolist() == list(range(10))
    True
    >>> len(reference_sample(np.arange(10_000), 1000, max_values=200_000))
    200
    """
    ids = np.unique(np.asarray(star_ids, dtype=np.int64))
    keep = max(2, max_values // max(int(n_cadences), 1))
    if ids.size <= keep:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, keep, replace=False))


@dataclass(frozen=True)
class CadenceGrid:
    """The job's cadences (sorted) and their mid-exposure times (BTJD)."""

    cadence: npt.NDArray[np.int64]
    btjd: npt.NDArray[np.float64]

    @classmethod
    def from_table(cls, table: pa.Table) -> CadenceGrid:
        """Every cadence present in a photometry table (each FFI measures every star, so a
        sample of stars holds every stored cadence)."""
        cad = table.column("cadence").to_numpy().astype(np.int64)
        cadence, first = np.unique(cad, return_index=True)
        btjd = table.column("btjd").to_numpy().astype(np.float64)[first]
        return cls(cadence, btjd)

    def __len__(self) -> int:
        return int(self.cadence.size)


def choose_apertures(
    fluxes: npt.NDArray[np.float64], good: npt.NDArray[np.bool_],
    radii: npt.ArrayLike, default: int = 0,
) -> npt.NDArray[np.intp]:
    """Per star, the aperture whose light curve has the lowest relative point-to-point scatter.

    Parameters
    ----------
    fluxes : numpy.ndarray
        ``(n_radii, n_stars, n_cadences)`` flux in each aperture.
    good : numpy.ndarray of bool
        ``(n_stars, n_cadences)`` usable points (quality bits, finite positive flux).
    radii : array_like
        The radius of each aperture (for the record; the choice is by scatter only).
    default : int
        Index of the aperture kept when no other has a finite scatter.

    Returns
    -------
    numpy.ndarray of int
        ``(n_stars,)`` index into ``fluxes`` of each star's aperture. An aperture competes
        only when it has at least 80 % of the default one's usable points.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = np.ones((2, 500))
    >>> small = base * (1 + np.array([[0.001], [0.004]]) * rng.standard_normal((2, 500)))
    >>> large = base * (1 + np.array([[0.003], [0.002]]) * rng.standard_normal((2, 500)))
    >>> choose_apertures(np.stack([small, large]), np.ones((2, 500), bool), [1.5, 3.0]).tolist()
    [0, 1]
    """
    f = np.asarray(fluxes, dtype=np.float64)
    n_radii, n = f.shape[:2]
    if np.size(radii) != n_radii:
        raise ValueError(f"{np.size(radii)} radii for {n_radii} apertures")
    scatter = np.full((n_radii, n), np.inf)
    counts = np.zeros((n_radii, n))
    for k in range(n_radii):  # a handful of apertures; each step is vectorised over stars
        ok = good & np.isfinite(f[k]) & (f[k] > 0)
        counts[k] = ok.sum(axis=1)
        p2p = star_quality(normalise(f[k], ok)).p2p_scatter
        scatter[k] = np.where(np.isfinite(p2p) & (p2p > 0), p2p, np.inf)
    scatter[counts < _MIN_APERTURE_COMPLETENESS * counts[default]] = np.inf
    best = np.argmin(scatter, axis=0)
    return np.asarray(np.where(np.isfinite(scatter.min(axis=0)), best, default), dtype=np.intp)


@dataclass(frozen=True)
class _Matrices:
    """A star-sorted photometry table as ``(n_stars, n_cadences)`` matrices (NaN or
    ``OUTSIDE`` where a star has no row), one flux and error matrix per aperture
    (:data:`RADII`), and the cell of each row. A star whose aperture was chosen before
    (``frozen`` >= 0) has that aperture's flux in every matrix."""

    star_ids: npt.NDArray[np.int64]
    row: npt.NDArray[np.intp]
    col: npt.NDArray[np.intp]
    on_grid: npt.NDArray[np.bool_]
    fluxes: npt.NDArray[np.float64]
    errors: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int64]
    frozen: npt.NDArray[np.intp]


#: Aperture radii (px) in the order of :class:`_Matrices`: the default (``flux``) first.
RADII = np.array([DEFAULT_APERTURE_RADIUS, *APERTURE_RADII.values()])
_FLUX_COLUMNS = [("flux", "flux_err")] + [(f"flux_{k}", f"flux_err_{k}") for k in APERTURE_RADII]


def _column(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _matrices(table: pa.Table, grid: CadenceGrid) -> _Matrices:
    sid = table.column("star_id").to_numpy().astype(np.int64)
    star_ids, row = np.unique(sid, return_inverse=True)
    cad = table.column("cadence").to_numpy().astype(np.int64)
    col = np.clip(np.searchsorted(grid.cadence, cad), 0, max(len(grid) - 1, 0))
    on_grid = grid.cadence[col] == cad if len(grid) else np.zeros(cad.size, dtype=bool)
    shape = (star_ids.size, len(grid))
    r, c = row[on_grid], col[on_grid]

    def matrix(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        m = np.full(shape, np.nan)
        m[r, c] = values[on_grid]
        return m

    quality = np.full(shape, int(QualityFlags.OUTSIDE), dtype=np.int64)
    quality[r, c] = table.column("quality").to_numpy(zero_copy_only=False)[on_grid] & ~CLEANING_BITS
    fluxes = np.stack([matrix(_column(table, f)) for f, _ in _FLUX_COLUMNS])
    errors = np.stack([matrix(_column(table, e)) for _, e in _FLUX_COLUMNS])
    # Rows already compacted hold the flux of the aperture chosen then (aperture_radius, in
    # the flux column); per-cadence rows hold every aperture's. A star chosen before keeps
    # its aperture: its compacted and new rows together, in every matrix.
    chosen_before = _column(table, "aperture_radius")
    known = np.isfinite(chosen_before)
    frozen = np.full(star_ids.size, -1, dtype=np.intp)
    if known.any():
        frozen[row[known]] = np.argmin(np.abs(RADII[None, :] - chosen_before[known, None]), axis=1)
        stars = np.flatnonzero(frozen >= 0)
        m_known = (matrix(known.astype(np.float64)) > 0)[stars]
        for mats in (fluxes, errors):
            merged = np.where(m_known, mats[0, stars], mats[frozen[stars], stars])
            mats[:, stars] = merged[None]
    return _Matrices(star_ids, row, col, on_grid, fluxes, errors, quality, frozen)


@dataclass(frozen=True)
class LightCurveCleaner:
    """Common-mode correction, bad epochs and outlier clipping for chunks of stars.

    Attributes
    ----------
    grid : CadenceGrid
        The cadences the reference ensemble was built on.
    reference : ReferenceEnsemble
        The quiet stars and the cotrending basis.
    bad_epochs : numpy.ndarray of bool
        Cadences of the grid where the ensemble is noisy (flagged ``BAD_EPOCH``).
    star_ids, x, y, tmag : numpy.ndarray
        The star list (sorted by id): where each star sits and how bright it is.
    """

    grid: CadenceGrid
    reference: ReferenceEnsemble
    bad_epochs: npt.NDArray[np.bool_]
    star_ids: npt.NDArray[np.int64]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    tmag: npt.NDArray[np.float64]
    sample_ids: npt.NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64))
    sample_pick: npt.NDArray[np.intp] = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.intp))

    @classmethod
    def select(cls, sample: pa.Table, stars: pa.Table,
               windows: Sequence[tuple[float, float]] = ()) -> LightCurveCleaner:
        """Build the cleaner from the photometry of a sample of stars (:func:`reference_sample`)
        and the star list (``star_id``, ``x``, ``y``, ``tmag``). Cadences inside ``windows``
        (BTJD start, stop: known scattered light) are bad epochs from the start."""
        grid = CadenceGrid.from_table(sample)
        in_window = window_mask(grid.btjd, windows)
        order = np.argsort(stars.column("star_id").to_numpy())
        ids, x, y, tmag = (
            stars.column(c).to_numpy().astype(np.float64 if c != "star_id" else np.int64)[order]
            for c in ("star_id", "x", "y", "tmag")
        )
        empty = cls(grid, ReferenceEnsemble.empty(len(grid)), in_window, ids, x, y, tmag)
        m = _matrices(sample, grid)
        if m.star_ids.size < 3 or len(grid) < 3:
            return empty
        pos = empty._positions(m.star_ids)
        # A provisional reference in the default aperture (or the one chosen before) picks
        # the sample stars' apertures; the reference is then built in those. A rerun, where
        # every star's aperture is already chosen, rebuilds that same reference.
        provisional, _ = _reference(m.fluxes[0], m.errors[0], m.quality, pos, m.star_ids,
                                    in_window)
        if len(provisional) < 3:
            return empty
        corrected, goods = _corrected(m, provisional, pos)
        pick = choose_apertures(corrected, goods[0] & ~in_window[None, :], RADII)
        pick = np.where(m.frozen >= 0, m.frozen, pick)
        rows_all = np.arange(m.star_ids.size)
        flux = m.fluxes[pick, rows_all]
        reference, ok = _reference(flux, m.errors[pick, rows_all], m.quality, pos,
                                   m.star_ids, in_window)
        if len(reference) < 3:
            return empty
        # Bad epochs are judged on the quiet stars once corrected: their noise is then white,
        # so a cadence where they all scatter more is bad for every star.
        rows = np.searchsorted(m.star_ids, reference.ids)
        model = common_mode(
            flux[rows], None, m.quality[rows], reference.x, reference.y, reference.tmag,
            n_neighbours=N_NEIGHBOURS, reference=reference, ids=reference.ids,
            bad_bits=_INPUT_BAD_BITS, good=ok[rows],
        )
        fn = normalise(flux[rows] / model, ok[rows])
        epochs = epoch_quality(fn, m.quality[rows], bad_bits=_INPUT_BAD_BITS)
        return cls(grid, reference, epochs.bad | in_window, ids, x, y, tmag,
                   sample_ids=m.star_ids, sample_pick=pick)

    def _positions(self, ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], ...]:
        at = np.clip(np.searchsorted(self.star_ids, ids), 0, max(self.star_ids.size - 1, 0))
        known = self.star_ids.size > 0 and bool(np.all(self.star_ids[at] == ids))
        if not known:
            raise ValueError("photometry holds star ids that are not in the star list")
        return self.x[at], self.y[at], self.tmag[at]

    def clean(self, table: pa.Table) -> pa.Table:
        """The chunk with ``flux_corrected`` (float32) added and the cleaning bits set.

        ``table`` holds ``star_id``, ``cadence``, ``flux``, ``flux_err`` and ``quality`` of
        whole light curves. Points of a cadence that is not on the grid (none, in a
        pipeline run) keep their raw flux as corrected flux.
        """
        quality_in = table.column("quality").to_numpy(zero_copy_only=False)
        flux_in = table.column("flux").to_numpy(zero_copy_only=False)
        if table.num_rows == 0:
            return _with_columns(table, flux_in.astype(np.float32), quality_in,
                                 aperture_radius=np.zeros(0, np.float32))
        m = _matrices(table, self.grid)
        corrected, goods = _corrected(m, self.reference, self._positions(m.star_ids))
        keep = goods & ~self.bad_epochs[None, None, :]
        # Each star's aperture: the least scattered once corrected, or the one chosen before
        # (in an earlier run, or for the reference sample by select()).
        pick = choose_apertures(corrected, keep[0], RADII)
        if self.sample_ids.size:
            at = np.clip(np.searchsorted(self.sample_ids, m.star_ids), 0, self.sample_ids.size - 1)
            pick = np.where(self.sample_ids[at] == m.star_ids, self.sample_pick[at], pick)
        pick = np.where(m.frozen >= 0, m.frozen, pick)
        stars = np.arange(m.star_ids.size)
        chosen = corrected[pick, stars]
        fn = normalise(chosen, keep[pick, stars])
        outliers = clip_outliers(self.grid.btjd, fn)
        bits = np.where(outliers, int(QualityFlags.OUTLIER), 0)
        bits |= np.where(self.bad_epochs[None, :], int(QualityFlags.BAD_EPOCH), 0)
        r, c = m.row, m.col
        flux_corrected = np.where(m.on_grid, chosen[r, c], flux_in).astype(np.float32)
        quality = (quality_in & ~CLEANING_BITS) | np.where(m.on_grid, bits[r, c], 0)
        err_in = table.column("flux_err").to_numpy(zero_copy_only=False)
        flux = m.fluxes[pick, stars]
        err = m.errors[pick, stars]
        return _with_columns(
            table, flux_corrected, quality.astype(quality_in.dtype),
            flux=np.where(m.on_grid, flux[r, c], flux_in).astype(np.float32),
            flux_err=np.where(m.on_grid, err[r, c], err_in).astype(np.float32),
            aperture_radius=RADII[pick][r].astype(np.float32),
        )


def _reference(
    flux: npt.NDArray[np.float64], err: npt.NDArray[np.float64], quality: npt.NDArray[np.int64],
    pos: tuple[npt.NDArray[np.float64], ...], ids: npt.NDArray[np.int64],
    in_window: npt.NDArray[np.bool_],
) -> tuple[ReferenceEnsemble, npt.NDArray[np.bool_]]:
    """The quiet stars of ``flux`` (outside ``in_window``), and its usable points."""
    ok = good_points(flux, quality, bad_bits=_INPUT_BAD_BITS) & ~in_window[None, :]
    return select_reference(flux, quality, *pos, flux_err=err, ids=ids, bad_bits=_INPUT_BAD_BITS,
                            good=ok, n_neighbours=N_NEIGHBOURS), ok


def _corrected(
    m: _Matrices, reference: ReferenceEnsemble, pos: tuple[npt.NDArray[np.float64], ...],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Every aperture's flux divided by its common-mode model, and its usable points
    (``(n_radii, n_stars, n_cadences)`` each)."""
    goods = [good_points(f, m.quality, bad_bits=_INPUT_BAD_BITS) for f in m.fluxes]
    models = common_mode_many(list(m.fluxes), goods, *pos, reference=reference,
                              ids=m.star_ids, n_neighbours=N_NEIGHBOURS)
    return m.fluxes / np.stack(models), np.stack(goods)


def _with_columns(table: pa.Table, flux_corrected: np.ndarray, quality: np.ndarray,
                  **replace: np.ndarray) -> pa.Table:
    """``table`` with ``quality`` and any ``replace`` columns set, and ``flux_corrected``."""
    for name, values in {"quality": quality, **replace, "flux_corrected": flux_corrected}.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, pa.array(values))
        else:
            table = table.append_column(name, pa.array(values))
    return table
