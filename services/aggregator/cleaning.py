"""Light-curve cleaning: quality masks, epoch and star metrics, outlier clipping and a
common-mode (cotrending) correction from an ensemble of quiet stars.

Everything here is a pure, vectorised function of arrays; there is no I/O and no asyncio.
Light curves of many stars on a common cadence grid are matrices of shape
``(n_stars, n_cadences)`` (a star's missing cadences are NaN); the functions loop over
nothing but a handful of iterations, neighbour offsets or fixed-size blocks of stars (the
blocks bound memory, each block is one vectorised step).

The steps, in the order :func:`clean_lightcurves` applies them:

1. **Mask bits that are applied.** :func:`good_points`: a point is usable when none of
   ``bad_bits`` (:data:`CLEANING_BAD_BITS`: the analyzer's default mask) is set, its flux is
   finite and positive, and it is outside the scattered-light windows given
   (:func:`window_mask`, :func:`orbit_edge_windows`).
2. **Common mode.** :func:`select_reference` picks quiet stars (complete, never flagged,
   scatter close to their own point-to-point noise once a provisional common mode is
   removed, no run of outlying points) and derives the ensemble's cotrending basis: the
   principal components of their noise-weighted light curves that stand above the noise.
   :func:`common_mode` gives each star a local common mode, the weighted, clipped mean of
   the normalised light curves of its nearest quiet neighbours in ``(x, y, tmag)`` (never
   itself), interpolated to its position; then fits the star with that local mode and the
   basis vectors (each star responds to a pointing excursion or to scattered light in its
   own proportions), robustly and with its neighbours' coefficients as a prior, so that a
   variable star's own signal is not fitted away. The corrected flux is
   ``flux / model``; the raw flux is kept.
3. **Epochs.** :func:`epoch_quality` flags cadences where many stars are flagged or where the
   ensemble's scatter (in units of each star's own noise) is an outlier: scattered light,
   pointing excursions.
4. **Outliers.** :func:`clip_outliers` clips isolated single-point outliers (up or down)
   whose immediate neighbours agree with the local baseline; runs of low points (eclipses,
   transits) and flares (fast rise, decay over several points) are kept.
5. **Stars.** :func:`star_quality`: completeness, robust and point-to-point scatter, and how
   the scatter compares with the reported errors.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> n, c = 60, 200
>>> t = np.arange(c) / 48.0
>>> trend = 1.0 + 0.02 * np.sin(2 * np.pi * t / 3.0)            # shared by every star
>>> flux = 1000.0 * trend * (1.0 + 0.001 * rng.standard_normal((n, c)))
>>> x, y = rng.uniform(0, 2048, n), rng.uniform(0, 2048, n)
>>> tmag = rng.uniform(10, 12, n)
>>> out = clean_lightcurves(t, flux, np.full((n, c), 1.0), np.zeros((n, c), int), x, y, tmag)
>>> raw = robust_std(flux / np.median(flux, axis=1, keepdims=True), axis=1)
>>> fixed = robust_std(out.flux_norm, axis=1)
>>> bool(np.median(raw) > 0.01), bool(np.median(fixed) < 0.0012)
(True, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from tess_ffi.shared.quality import DEFAULT_BAD_BITS, QualityFlags

__all__ = [
    "CLEANING_BAD_BITS",
    "STAR_FLAG_BITS",
    "robust_std",
    "good_points",
    "normalise",
    "window_mask",
    "orbit_edge_windows",
    "StarQuality",
    "star_quality",
    "EpochQuality",
    "epoch_quality",
    "ReferenceEnsemble",
    "select_reference",
    "common_mode",
    "common_mode_many",
    "clip_outliers",
    "CleanedLightCurves",
    "clean_lightcurves",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Bits that make a point unusable: the analyzer's default mask (attitude tweak, safe mode,
#: coarse and Earth point, Argabrightening, momentum dump, manual exclude, impulsive outlier,
#: bad calibration, and the photometer's saturated, negative-flux and off-chip bits).
#: Scattered light (4096) is not in it: the cadences where it actually hurts are found by
#: :func:`epoch_quality`, and known windows are masked by :func:`window_mask`.
CLEANING_BAD_BITS: int = DEFAULT_BAD_BITS
#: Star-level bits that keep a star out of the reference ensemble when set on any cadence.
STAR_FLAG_BITS: int = int(
    QualityFlags.EDGE
    | QualityFlags.SATURATED
    | QualityFlags.NEGATIVE_FLUX
    | QualityFlags.OUTSIDE
    | QualityFlags.CONTAMINATED
)
_MAD_TO_STD = 1.4826
#: Stars per block when neighbours' light curves are gathered (bounds memory).
_BLOCK = 256
#: Most values of one gathered block (stars x neighbours x cadences): 2e6 float64, 16 MB.
_BLOCK_VALUES = 2_000_000


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def robust_std(values: npt.ArrayLike, axis: int | None = -1) -> FloatArray:
    """Standard deviation estimated from the median absolute deviation, ignoring NaN.

    Parameters
    ----------
    values : array_like
        Values; NaN entries are ignored.
    axis : int or None
        Axis along which to compute (None: all values).

    Returns
    -------
    numpy.ndarray
        ``1.4826 * median(|v - median(v)|)``; NaN where no value is finite.

    Examples
    --------
    >>> float(robust_std([1.0, 2.0, 3.0, 4.0, 100.0]))
    1.4826
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        med = np.nanmedian(v, axis=axis, keepdims=True)
        return np.asarray(_MAD_TO_STD * np.nanmedian(np.abs(v - med), axis=axis))


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings (NaN is the answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _as_matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (stars, cadences), got shape {a.shape}")
    return a


def _p2p_noise(f: FloatArray) -> FloatArray:
    """Per-row white-noise level from differences of consecutive finite values."""
    valid = np.isfinite(f)
    prev = _neighbours(valid, 1, backward=True)[0]
    d = np.where(valid & (prev >= 0), f - np.take_along_axis(f, np.maximum(prev, 0), 1), np.nan)
    with _quiet_nan_warnings():
        return np.asarray(_MAD_TO_STD * np.nanmedian(np.abs(d), axis=1) / math.sqrt(2.0))


def _neighbours(valid: BoolArray, depth: int, *, backward: bool) -> list[npt.NDArray[np.intp]]:
    """Indices of the 1st..``depth``-th valid cadence before (or after) each cadence, per
    row; -1 where there is none."""
    n, c = valid.shape
    cols = np.arange(c)
    if backward:
        idx = np.where(valid, cols, -1)
        last = np.maximum.accumulate(idx, axis=1)  # last valid at or before
        first = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    else:
        idx = np.where(valid, cols, c)
        nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]  # first valid at or after
        first = np.concatenate([nxt[:, 1:], np.full((n, 1), c)], axis=1)
        first = np.where(first >= c, -1, first)
    out = [first]
    for _ in range(depth - 1):
        prev = out[-1]
        step = np.take_along_axis(first, np.maximum(prev, 0), axis=1)
        out.append(np.where(prev >= 0, step, -1))
    return out


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def window_mask(time: npt.ArrayLike, windows: Sequence[tuple[float, float]]) -> BoolArray:
    """True for times inside any of the ``(start, stop)`` windows (BTJD, inclusive).

    Parameters
    ----------
    time : array_like
        Times (any shape).
    windows : sequence of (float, float)
        Known bad intervals, e.g. scattered-light windows from a sector's data release notes
        or :func:`orbit_edge_windows`.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``time``.

    Examples
    --------
    >>> window_mask([1.0, 2.0, 3.0, 4.0], [(1.5, 2.5), (3.9, 5.0)]).tolist()
    [False, True, False, True]
    """
    t = np.asarray(time, dtype=np.float64)
    w = np.asarray(list(windows), dtype=np.float64).reshape(-1, 2)
    if w.size == 0:
        return np.zeros(t.shape, dtype=bool)
    inside = (t[..., None] >= w[:, 0]) & (t[..., None] <= w[:, 1])
    return np.asarray(inside.any(axis=-1))


def orbit_edge_windows(
    time: npt.ArrayLike, *, gap_days: float = 0.5, start_days: float = 0.5, end_days: float = 1.0
) -> list[tuple[float, float]]:
    """Windows at the start and end of each continuous segment (orbit) of a time series.

    TESS's scattered light comes mostly as the spacecraft approaches and leaves perigee, i.e.
    at the ends of each orbit's data. Segments are separated by gaps longer than
    ``gap_days``.

    Parameters
    ----------
    time : array_like
        Times of the cadences (days).
    gap_days : float
        A gap longer than this starts a new segment.
    start_days, end_days : float
        Length of the window after each segment's start and before its end.

    Returns
    -------
    list of (float, float)
        Windows for :func:`window_mask`.

    Examples
    --------
    >>> t = [0.0, 0.25, 0.5, 5.0, 5.25, 5.5]
    >>> orbit_edge_windows(t, start_days=0.125, end_days=0.125)
    [(0.0, 0.125), (0.375, 0.5), (5.0, 5.125), (5.375, 5.5)]
    """
    t = np.sort(np.asarray(time, dtype=np.float64).ravel())
    t = t[np.isfinite(t)]
    if t.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(t) > gap_days)
    starts = np.r_[t[0], t[breaks + 1]]
    stops = np.r_[t[breaks], t[-1]]
    out: list[tuple[float, float]] = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):  # a handful of orbits
        if start_days > 0:
            out.append((a, min(b, a + start_days)))
        if end_days > 0:
            out.append((max(a, b - end_days), b))
    return out


def good_points(
    flux: npt.ArrayLike,
    quality: npt.ArrayLike | None = None,
    *,
    time: npt.ArrayLike | None = None,
    bad_bits: int = CLEANING_BAD_BITS,
    windows: Sequence[tuple[float, float]] = (),
) -> BoolArray:
    """Usable points: finite positive flux, none of ``bad_bits`` set, outside ``windows``.

    Parameters
    ----------
    flux : array_like
        ``(n_stars, n_cadences)`` or one light curve.
    quality : array_like of int, optional
        Quality bits of each point (same shape as ``flux``, or one row per cadence).
    time : array_like, optional
        Times (needed with ``windows``), shape ``(n_cadences,)`` or that of ``flux``.
    bad_bits : int
        Bits that make a point unusable.
    windows : sequence of (float, float)
        Time windows to mask.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``flux``.

    Examples
    --------
    >>> good_points([1.0, np.nan, 2.0, 3.0, -1.0], [0, 0, 32, 4096, 0]).tolist()
    [True, False, False, True, False]
    """
    f = np.asarray(flux, dtype=np.float64)
    ok = np.isfinite(f) & (f > 0)
    if quality is not None:
        ok &= (np.asarray(quality, dtype=np.int64) & int(bad_bits)) == 0
    if windows:
        if time is None:
            raise ValueError("time is needed to apply windows")
        ok &= ~window_mask(time, windows)
    return np.asarray(ok)


def normalise(flux: npt.ArrayLike, good: npt.ArrayLike | None = None) -> FloatArray:
    """Each light curve divided by the median of its good points; NaN where not good.

    Examples
    --------
    >>> normalise([[2.0, 4.0, 4.0, 100.0]], [[True, True, True, False]]).tolist()
    [[0.5, 1.0, 1.0, nan]]
    """
    f = _as_matrix(flux, "flux")
    ok = np.isfinite(f) if good is None else _as_matrix(good, "good").astype(bool) & np.isfinite(f)
    masked = np.where(ok, f, np.nan)
    with _quiet_nan_warnings():
        med = np.nanmedian(masked, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(med > 0, masked / med, np.nan))


# --------------------------------------------------------------------------------------------
# star and epoch metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StarQuality:
    """Per-star metrics of a set of light curves (arrays of shape ``(n_stars,)``).

    Attributes
    ----------
    n_good : numpy.ndarray of int
        Usable points.
    completeness : numpy.ndarray
        ``n_good / n_cadences``.
    robust_scatter : numpy.ndarray
        Robust standard deviation of the normalised flux (all variability included).
    p2p_scatter : numpy.ndarray
        White-noise level from consecutive points (insensitive to slow variability).
    error : numpy.ndarray
        Median normalised flux error (NaN without errors).
    noise_ratio : numpy.ndarray
        ``p2p_scatter / error``: near 1 when the errors describe the noise.
    excess : numpy.ndarray
        ``robust_scatter / p2p_scatter``: near 1 for a quiet star, large for a variable.
    flagged : numpy.ndarray of bool
        Any star-level bit of :data:`STAR_FLAG_BITS` set on any cadence.
    """

    n_good: npt.NDArray[np.int64]
    completeness: FloatArray
    robust_scatter: FloatArray
    p2p_scatter: FloatArray
    error: FloatArray
    noise_ratio: FloatArray
    excess: FloatArray
    flagged: BoolArray


def star_quality(
    flux_norm: npt.ArrayLike,
    quality: npt.ArrayLike | None = None,
    flux_err_norm: npt.ArrayLike | None = None,
) -> StarQuality:
    """Quality metrics of each star's normalised light curve.

    Parameters
    ----------
    flux_norm : array_like
        ``(n_stars, n_cadences)`` normalised flux, NaN where unusable (see :func:`normalise`).
    quality : array_like of int, optional
        Quality bits, for :attr:`StarQuality.flagged`.
    flux_err_norm : array_like, optional
        Normalised flux errors.

    Returns
    -------
    StarQuality

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = 1 + 0.01 * rng.standard_normal((2, 500))
    >>> f[1] += 0.05 * np.sin(np.arange(500) / 30.0)        # a slow variable
    >>> q = star_quality(f, flux_err_norm=np.full((2, 500), 0.01))
    >>> (q.excess > 2).tolist(), q.noise_ratio.round(1).tolist()
    ([False, True], [0.9, 1.0])
    """
    f = _as_matrix(flux_norm, "flux_norm")
    n_cad = f.shape[1]
    valid = np.isfinite(f)
    n_good = valid.sum(axis=1)
    scatter = robust_std(f, axis=1)
    p2p = _p2p_noise(f)
    if flux_err_norm is not None:
        e = np.where(valid, _as_matrix(flux_err_norm, "flux_err_norm"), np.nan)
        with _quiet_nan_warnings():
            err = np.asarray(np.nanmedian(e, axis=1))
    else:
        err = np.full(f.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise_ratio = p2p / err
        excess = scatter / p2p
    if quality is not None:
        q = np.broadcast_to(np.asarray(quality, dtype=np.int64), f.shape)
        flagged = ((q & STAR_FLAG_BITS) != 0).any(axis=1)
    else:
        flagged = np.zeros(f.shape[0], dtype=bool)
    return StarQuality(
        n_good=n_good.astype(np.int64),
        completeness=n_good / max(n_cad, 1),
        robust_scatter=scatter,
        p2p_scatter=p2p,
        error=err,
        noise_ratio=noise_ratio,
        excess=excess,
        flagged=np.asarray(flagged),
    )


@dataclass(frozen=True)
class EpochQuality:
    """Per-cadence metrics of an ensemble of light curves (arrays of shape ``(n_cadences,)``).

    Attributes
    ----------
    frac_flagged : numpy.ndarray
        Fraction of stars with a bad bit (or no usable flux) at the cadence.
    ensemble_offset : numpy.ndarray
        Median over stars of ``(flux_norm - 1) / scatter``: a common-mode excursion.
    ensemble_scatter : numpy.ndarray
        Robust spread over stars of ``(flux_norm - 1) / scatter``: about 1 on a normal
        cadence, larger where every star got noisier (scattered light, pointing excursions).
    bad : numpy.ndarray of bool
        Cadences to drop: too many stars flagged, or an outlying scatter (or offset, if
        asked for).
    """

    frac_flagged: FloatArray
    ensemble_offset: FloatArray
    ensemble_scatter: FloatArray
    bad: BoolArray


def epoch_quality(
    flux_norm: npt.ArrayLike,
    quality: npt.ArrayLike | None = None,
    *,
    bad_bits: int = CLEANING_BAD_BITS,
    scatter: npt.ArrayLike | None = None,
    sigma: float = 5.0,
    min_excess: float = 0.2,
    max_flagged: float = 0.5,
    use_offset: bool = False,
) -> EpochQuality:
    """Per-cadence quality of an ensemble of normalised light curves.

    Run it on cotrended flux (the common mode removed), where a cadence's offset or scatter
    is no longer a systematic trend that the correction takes out.

    Parameters
    ----------
    flux_norm : array_like
        ``(n_stars, n_cadences)`` normalised flux, NaN where unusable.
    quality : array_like of int, optional
        Quality bits (same shape, or one row per cadence).
    bad_bits : int
        Bits counted as flagged.
    scatter : array_like, optional
        Each star's noise (normalised); default: its robust scatter.
    sigma : float
        A cadence is bad when its ensemble scatter is more than ``sigma`` robust standard
        deviations above the median over cadences, and also ``min_excess`` (relative)
        above it.
    min_excess : float
        Smallest relative excess of scatter that makes a cadence bad.
    max_flagged : float
        A cadence where more than this fraction of stars is flagged is bad.
    use_offset : bool
        Also flag cadences whose ensemble offset is a ``sigma`` outlier.

    Returns
    -------
    EpochQuality

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> f = 1 + 0.01 * rng.standard_normal((300, 100))
    >>> f[:, 40] = 1 + 0.03 * rng.standard_normal(300)       # every star 3x noisier
    >>> eq = epoch_quality(f)
    >>> np.flatnonzero(eq.bad).tolist(), bool(eq.ensemble_scatter[40] > 2.5)
    ([40], True)
    """
    f = _as_matrix(flux_norm, "flux_norm")
    n, c = f.shape
    valid = np.isfinite(f)
    if quality is not None:
        q = np.broadcast_to(np.asarray(quality, dtype=np.int64), f.shape)
        flagged = ((q & int(bad_bits)) != 0) | ~valid
    else:
        flagged = ~valid
    frac_flagged = flagged.mean(axis=0) if n else np.zeros(c)
    s = robust_std(f, axis=1) if scatter is None else np.asarray(scatter, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(valid & ~flagged, (f - 1.0) / s[:, None], np.nan)
    with _quiet_nan_warnings():
        offset = np.asarray(np.nanmedian(z, axis=0))
    spread = robust_std(z, axis=0)
    with _quiet_nan_warnings():
        centre = float(np.nanmedian(spread)) if np.isfinite(spread).any() else np.nan
    spread_sd = float(robust_std(spread, axis=None))
    limit = centre + max(sigma * spread_sd, min_excess * centre)
    with np.errstate(invalid="ignore"):
        bad = (frac_flagged > max_flagged) | (spread > limit)
        if use_offset:
            off_c = float(np.nanmedian(offset)) if np.isfinite(offset).any() else 0.0
            off_sd = float(robust_std(offset, axis=None))
            bad |= np.abs(offset - off_c) > sigma * off_sd
    return EpochQuality(
        frac_flagged=np.asarray(frac_flagged, dtype=np.float64),
        ensemble_offset=offset,
        ensemble_scatter=spread,
        bad=np.asarray(bad),
    )


# --------------------------------------------------------------------------------------------
# common mode
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceEnsemble:
    """Quiet stars whose normalised light curves model the systematics of their neighbours.

    Attributes
    ----------
    flux_norm : numpy.ndarray
        ``(n_ref, n_cadences)`` normalised flux, NaN where unusable.
    x, y, tmag : numpy.ndarray
        Position (px) and magnitude of each reference star.
    scatter : numpy.ndarray
        Each reference star's noise (robust scatter of its residuals from the provisional
        common mode); weights are ``1 / scatter**2``.
    ids : numpy.ndarray of int
        Identifiers (star ids, or indices into the arrays the ensemble was selected from),
        so that a star is never its own reference.
    basis : numpy.ndarray
        ``(n_components, n_cadences)`` orthonormal principal components of the ensemble's
        noise-weighted light curves that stand above the noise (cotrending basis vectors:
        the shapes of the systematics that different stars see in different proportions,
        e.g. the flux lost to a pointing excursion depends on where a star sits in its
        pixel).
    coef : numpy.ndarray or None
        ``(n_ref, 1 + n_components)`` each reference star's fitted coefficients of its own
        local common mode and of the basis: the prior of its neighbours' coefficients.
    """

    flux_norm: FloatArray
    x: FloatArray
    y: FloatArray
    tmag: FloatArray
    scatter: FloatArray
    ids: npt.NDArray[np.int64]
    basis: FloatArray
    coef: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def empty(cls, n_cadences: int) -> ReferenceEnsemble:
        """No reference star: :func:`common_mode` then models nothing (a model of 1)."""
        return cls(np.zeros((0, n_cadences)), np.zeros(0), np.zeros(0), np.zeros(0),
                   np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, n_cadences)))


def _neighbour_ids(
    ref_pts: FloatArray, ref_ids: npt.NDArray[np.int64], pts: FloatArray,
    ids: npt.NDArray[np.int64], k: int,
) -> npt.NDArray[np.intp]:
    """Rows of the ``k`` nearest reference stars of each point, never the point itself
    (-1 where fewer than ``k`` others exist)."""
    n_ref = ref_pts.shape[0]
    kk = min(k + 1, n_ref)
    _, nb = cKDTree(ref_pts).query(pts, k=kk)
    nb = np.asarray(nb, dtype=np.intp).reshape(pts.shape[0], kk)
    is_self = ref_ids[nb] == ids[:, None]
    # A stable sort puts the others first, nearest first; the star itself goes last.
    order = np.argsort(is_self, axis=1, kind="stable")
    nb = np.take_along_axis(nb, order, axis=1)
    nb = np.where(np.take_along_axis(is_self, order, axis=1), -1, nb)
    if nb.shape[1] < k:
        nb = np.concatenate([nb, np.full((nb.shape[0], k - nb.shape[1]), -1)], axis=1)
    return nb[:, :k]


def _scaled_points(x: FloatArray, y: FloatArray, tmag: FloatArray, xy_scale: float,
                   mag_scale: float) -> FloatArray:
    return np.column_stack([x / xy_scale, y / xy_scale, tmag / mag_scale])


def _interpolation_weights(
    offsets: FloatArray, inv_var: FloatArray, valid: BoolArray, ridge: float = 1e-2
) -> FloatArray:
    """Weights ``lam`` (per target, per neighbour) of the minimum-variance linear estimate at
    the target of a quantity that varies linearly with the ``offsets`` of the neighbours from
    the target: ``sum(lam) = 1`` and ``sum(lam * offset) = 0`` (a gradient across the
    neighbourhood cancels), minimising ``sum(lam**2 / inv_var)``. ``offsets`` is ``(n, k, d)``;
    a small ``ridge`` on the gradient terms keeps degenerate layouts stable (it pulls towards
    the plain inverse-variance mean)."""
    n, k, d = offsets.shape
    a = np.concatenate([np.ones((n, k, 1)), offsets], axis=2)  # (n, k, 1 + d)
    w = np.where(valid, inv_var, 0.0)
    m = np.einsum("nki,nk,nkj->nij", a, w, a)
    scale = np.einsum("nii->ni", m)[:, 1:].mean(axis=1) if d else np.zeros(n)
    m[:, np.arange(1, d + 1), np.arange(1, d + 1)] += ridge * np.maximum(scale, 1e-12)[:, None]
    e1 = np.zeros((n, 1 + d))
    e1[:, 0] = 1.0
    try:
        z = np.linalg.solve(m, e1[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        z = np.linalg.lstsq(m.reshape(-1, 1 + d), e1.reshape(-1), rcond=None)[0]  # pragma: no cover
    return np.asarray(w * np.einsum("nkj,nj->nk", a, z))


def _ensemble_mean(
    ref: FloatArray, ref_scatter: FloatArray | None, nb: npt.NDArray[np.intp], clip: float,
    lam: FloatArray | None = None,
) -> FloatArray:
    """Per target, its neighbours' light curves combined at each cadence: with weights
    ``lam`` (:func:`_interpolation_weights`) or inverse-variance weights, each neighbour's
    point dropped when it is more than ``clip`` of its own noise from the neighbours'
    median (its own variability, a flare, a cosmic ray). Without ``ref_scatter``: the plain
    median."""
    out = np.empty((nb.shape[0], ref.shape[1]))
    step = max(1, min(_BLOCK, _BLOCK_VALUES // max(nb.shape[1] * ref.shape[1], 1)))
    for a in range(0, nb.shape[0], step):  # blocks of stars bound memory; each vectorised
        blk = nb[a : a + step]
        g = np.where((blk >= 0)[:, :, None], ref[np.maximum(blk, 0)], np.nan)  # (m, k, c)
        with _quiet_nan_warnings():
            med = np.nanmedian(g, axis=1)  # (m, c)
        if ref_scatter is None:
            out[a : a + step] = med
            continue
        s = ref_scatter[np.maximum(blk, 0)][:, :, None]
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(g) & (np.abs(g - med[:, None, :]) <= clip * s)
        if lam is None:
            w = np.where(keep, 1.0 / (s * s), 0.0)
        else:
            w = np.where(keep, lam[a : a + step][:, :, None], 0.0)
        sw = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            # Interpolation weights may be negative: fall back to the median where the
            # points kept no longer carry most of the weight.
            mean = np.sum(w * np.where(keep, g, 0.0), axis=1) / sw
            out[a : a + step] = np.where(sw > 0.5 if lam is not None else sw > 0, mean, med)
    return out


def _principal_components(
    flux_norm: FloatArray, scatter: FloatArray, n_components: int | str, max_components: int,
    threshold: float = 1.25,
) -> FloatArray:
    """Leading right singular vectors of the noise-weighted ensemble ``(f - 1) / scatter``
    (entries winsorised at 5 so that one star's event cannot make a component). With
    ``"auto"``, those whose singular value exceeds ``threshold`` times the top of the noise
    bulk (estimated by the ``max_components + 2``-th value), at most ``max_components``."""
    n, c = flux_norm.shape
    if n < 3 or c < 3:
        return np.zeros((0, c))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (flux_norm - 1.0) / scatter[:, None]
    z = np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -5.0, 5.0)
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    if n_components == "auto":
        floor_at = min(max_components + 2, sv.size - 1)
        k = int(np.sum(sv[:max_components] > threshold * sv[floor_at]))
    else:
        k = min(int(n_components), sv.size)
    return np.asarray(vt[:k])


def select_reference(
    flux: npt.ArrayLike,
    quality: npt.ArrayLike | None,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    *,
    flux_err: npt.ArrayLike | None = None,
    ids: npt.ArrayLike | None = None,
    bad_bits: int = CLEANING_BAD_BITS,
    good: npt.ArrayLike | None = None,
    min_completeness: float = 0.8,
    max_excess: float = 1.5,
    max_noise_ratio: float = 2.0,
    max_outlier_fraction: float = 0.002,
    n_neighbours: int = 30,
    xy_scale: float = 256.0,
    mag_scale: float = 0.5,
    max_stars: int | None = None,
    seed: int = 0,
    n_components: int | str = "auto",
    max_components: int = 8,
) -> ReferenceEnsemble:
    """Pick the quiet stars that model the common mode, and their cotrending basis.

    Candidates are complete (at least ``min_completeness`` usable points) and never carry a
    star-level flag (:data:`STAR_FLAG_BITS`). A provisional systematics model is fitted to
    each (the median of its ``n_neighbours`` nearest candidates in ``(x, y, tmag)`` and the
    candidates' leading principal components); a candidate is quiet when the robust scatter
    of what remains is within ``max_excess`` of its own point-to-point noise (no slow
    variability), at most ``max_outlier_fraction`` of its points are more than 5 sigma off
    (no eclipses, transits or flares) and, with errors, its point-to-point noise is within
    ``max_noise_ratio`` of its median error (no fast variability). The quiet stars' own
    principal components above the noise become the cotrending basis, and each one's
    fitted coefficients the prior that :func:`common_mode` gives its neighbours.

    Parameters
    ----------
    flux : array_like
        ``(n_stars, n_cadences)`` flux (any unit).
    quality : array_like of int or None
        Quality bits (same shape).
    x, y, tmag : array_like
        Positions (px) and magnitudes, shape ``(n_stars,)``.
    flux_err : array_like, optional
        Flux errors (same unit as ``flux``).
    ids : array_like of int, optional
        Star identifiers kept with the ensemble (default: row indices).
    bad_bits : int
        Bits that make a point unusable.
    good : array_like of bool, optional
        Usable points (default: :func:`good_points`).
    min_completeness, max_excess, max_noise_ratio, max_outlier_fraction : float
        Selection thresholds, see above.
    n_neighbours : int
        Neighbours of the provisional common mode.
    xy_scale, mag_scale : float
        Distances: ``xy_scale`` pixels count as much as ``mag_scale`` magnitudes.
    max_stars : int, optional
        Keep at most this many quiet stars (a random subset, ``seed``).
    seed : int
        Seed of that subset.
    n_components : int or "auto"
        Principal components kept as :attr:`ReferenceEnsemble.basis`; ``"auto"``: those
        clearly above the noise (at most ``max_components``).
    max_components : int
        Most components with ``"auto"``.

    Returns
    -------
    ReferenceEnsemble

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> f = 100 * (1 + 0.01 * rng.standard_normal((40, 300)))
    >>> f[5] *= 1 + 0.2 * np.sin(np.arange(300) / 20.0)      # a variable star
    >>> pos = rng.uniform(0, 2048, (2, 40))
    >>> ref = select_reference(f, None, pos[0], pos[1], np.full(40, 12.0))
    >>> len(ref) > 30, 5 in ref.ids
    (True, False)
    """
    f = _as_matrix(flux, "flux")
    n = f.shape[0]
    xa, ya, ma = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, tmag))
    ida = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64).ravel()
    if not (xa.size == ya.size == ma.size == ida.size == n):
        raise ValueError("x, y, tmag (and ids) need one value per star (row of flux)")
    ok = good_points(f, quality, bad_bits=bad_bits) if good is None else np.asarray(good, bool)
    fn = normalise(f, ok)
    q = star_quality(fn, quality)
    cand = np.flatnonzero((q.completeness >= min_completeness) & ~q.flagged)
    empty = ReferenceEnsemble.empty(f.shape[1])
    if cand.size < 2:
        return empty
    pts = _scaled_points(xa[cand], ya[cand], ma[cand], xy_scale, mag_scale)
    nb = _neighbour_ids(pts, ida[cand], pts, ida[cand], n_neighbours)
    provisional = np.nan_to_num(_ensemble_mean(fn[cand], None, nb, clip=np.inf) - 1.0)
    # A provisional systematics model of every candidate (its neighbours' median and the
    # candidates' leading components, fitted to it): quietness is judged on what is left,
    # whatever the star's own mix of the systematics.
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = robust_std(fn[cand] - 1.0 - provisional, axis=1)
    basis0 = _principal_components(fn[cand], s1, n_components, max_components)
    fit0, _ = _fit_design(fn[cand] - 1.0, provisional, basis0)
    resid = fn[cand] - fit0
    rq = star_quality(resid)
    quiet = np.isfinite(rq.robust_scatter) & (rq.robust_scatter > 0)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        quiet &= rq.robust_scatter <= max_excess * rq.p2p_scatter
        # Eclipses, transits and flares leave the robust scatter alone but put many points
        # far out: such a star is no reference.
        dev = np.abs(resid - np.nanmedian(resid, axis=1, keepdims=True))
        far = np.sum(dev > 5.0 * rq.robust_scatter[:, None], axis=1)
        quiet &= far <= max_outlier_fraction * np.maximum(rq.n_good, 1)
        if flux_err is not None:
            with _quiet_nan_warnings():
                med = np.nanmedian(np.where(ok[cand], f[cand], np.nan), axis=1, keepdims=True)
                en = np.where(np.isfinite(fn[cand]), _as_matrix(flux_err, "flux_err")[cand], np.nan)
                err = np.asarray(np.nanmedian(en / med, axis=1))
            quiet &= ~(rq.p2p_scatter > max_noise_ratio * err)
    sel = np.flatnonzero(quiet)
    if max_stars is not None and sel.size > max_stars:
        sel = np.sort(np.random.default_rng(seed).choice(sel, max_stars, replace=False))
    rows = cand[sel]
    scatter = rq.robust_scatter[sel]
    ref = ReferenceEnsemble(
        flux_norm=fn[rows], x=xa[rows], y=ya[rows], tmag=ma[rows], scatter=scatter,
        ids=ida[rows],
        basis=_principal_components(fn[rows], scatter, n_components, max_components),
    )
    if len(ref) < 2:
        return ref
    # Each reference star's own coefficients (its local mode from the other references):
    # the prior that neighbours give a star in common_mode.
    local, _ = _local_mode(ref, ref.x, ref.y, ref.tmag, ref.ids, n_neighbours, xy_scale,
                           mag_scale, 4.0, True)
    _, coef = _fit_design(ref.flux_norm - 1.0, local, ref.basis)
    return dataclasses.replace(ref, coef=coef)


def _fit_design(
    y: FloatArray, local: FloatArray, basis: FloatArray, *,
    prior: tuple[FloatArray, FloatArray] | None = None, clip: float = 4.0,
    iterations: int = 3, ridge: float = 1e-6,
) -> tuple[FloatArray, FloatArray]:
    """Per star, least squares of ``y`` (normalised flux - 1, NaN where unusable) on its
    local common mode and the shared ``basis``, repeated without the star's own points more
    than ``clip`` sigma off the fit (eclipses and flares do not pull it).

    With a ``prior`` (mean and variance of each coefficient, ``(n, p)`` each), the result is
    the maximum a posteriori estimate with the star's noise taken as the scatter of its
    residuals: a quiet star's coefficients come from its data, a variable star's (whose
    residuals hold its own signal) lean on its neighbours', so that the basis does not
    absorb its variability. Returns the fit ``(n, c)`` and the coefficients ``(n, p)``."""
    n, c = y.shape
    k = basis.shape[0]
    p = 1 + k
    out = np.zeros((n, c))
    coefs = np.zeros((n, p))
    block = max(16, min(_BLOCK, 4_000_000 // max(p * c, 1)))
    eye = np.eye(p)
    for a in range(0, n, block):  # blocks of stars bound memory; each vectorised
        yy = y[a : a + block]
        m = yy.shape[0]
        x = np.concatenate([local[a : a + block][:, None, :],
                            np.broadcast_to(basis, (m, k, c))], axis=1)  # (m, p, c)
        valid = np.isfinite(yy)
        use = valid
        y0 = np.where(valid, yy, 0.0)
        for _ in range(iterations):  # a fit, then refits without the star's own outliers
            xw = x * use[:, None, :]
            lhs = xw @ x.transpose(0, 2, 1)
            scale = np.trace(lhs, axis1=1, axis2=2) / p
            lhs += ridge * np.maximum(scale, 1e-30)[:, None, None] * eye
            rhs = xw @ y0[:, :, None]
            coef = np.linalg.solve(lhs, rhs)  # (m, p, 1)
            fit = (coef.transpose(0, 2, 1) @ x)[:, 0, :]
            resid = np.where(valid, yy - fit, np.nan)
            s = robust_std(resid, axis=1)
            with np.errstate(invalid="ignore"):
                use = valid & (np.abs(resid) <= clip * s[:, None])
        if prior is not None:
            mu, var = (v[a : a + block] for v in prior)
            ok = np.isfinite(mu) & np.isfinite(var) & (var > 0)
            inv_prior = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)  # no prior: flat
            s2 = np.maximum(s * s, 1e-30)[:, None, None]
            post = lhs / s2 + inv_prior[:, :, None] * eye
            coef = np.linalg.solve(post, rhs / s2 + (inv_prior * np.nan_to_num(mu))[:, :, None])
            fit = (coef.transpose(0, 2, 1) @ x)[:, 0, :]
        out[a : a + block] = fit
        coefs[a : a + block] = coef[:, :, 0]
    return out, coefs


def _local_mode(
    reference: ReferenceEnsemble, x: FloatArray, y: FloatArray, tmag: FloatArray,
    ids: npt.NDArray[np.int64], n_neighbours: int, xy_scale: float, mag_scale: float,
    clip: float, gradient: bool,
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Each star's local common mode (its neighbours' combined normalised flux, minus 1; 0
    where there is none) and the reference rows of its neighbours (-1: none)."""
    ref_pts = _scaled_points(reference.x, reference.y, reference.tmag, xy_scale, mag_scale)
    pts = _scaled_points(x, y, tmag, xy_scale, mag_scale)
    nb = _neighbour_ids(ref_pts, reference.ids, pts, ids, min(n_neighbours, len(reference)))
    lam = None
    if gradient:
        safe = np.maximum(nb, 0)
        offsets = np.stack([(reference.x[safe] - x[:, None]) / xy_scale,
                            (reference.y[safe] - y[:, None]) / xy_scale], axis=2)
        inv_var = 1.0 / reference.scatter[safe] ** 2
        lam = _interpolation_weights(offsets, inv_var, nb >= 0)
    mean = _ensemble_mean(reference.flux_norm, reference.scatter, nb, clip, lam)
    return np.nan_to_num(mean - 1.0), nb


def common_mode(
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    quality: npt.ArrayLike | None,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    *,
    n_neighbours: int = 30,
    reference: ReferenceEnsemble | None = None,
    ids: npt.ArrayLike | None = None,
    bad_bits: int = CLEANING_BAD_BITS,
    good: npt.ArrayLike | None = None,
    xy_scale: float = 256.0,
    mag_scale: float = 0.5,
    clip: float = 4.0,
    fit: bool = True,
    gradient: bool = True,
) -> FloatArray:
    """Per-star multiplicative systematics model from quiet neighbours.

    For each star, the ``n_neighbours`` nearest reference stars in ``(x / xy_scale,
    y / xy_scale, tmag / mag_scale)`` (never the star itself) give, at each cadence, a
    weighted mean of their normalised flux, a neighbour's point dropped when it is more
    than ``clip`` of its own noise from the neighbours' median. The weights are inverse
    variances or, with ``gradient``, the minimum-variance weights that also cancel a
    systematic varying linearly across the neighbourhood (neighbours rarely sit evenly
    around a star, least of all near the edges of the CCD or in a sparse field). With
    ``fit``, the star's own normalised flux minus 1 is then fitted (least squares, then
    twice more without its points more than 4 sigma off, so eclipses and flares do not pull
    the fit) by that local common mode and the ensemble's cotrending basis vectors
    (:attr:`ReferenceEnsemble.basis`): each star gets its own mix of the systematics, as
    its response to a pointing excursion or to scattered light depends on the star. The
    model is 1 plus the fit; divide the flux by it.

    Parameters
    ----------
    flux : array_like
        ``(n_stars, n_cadences)`` flux of the stars to correct.
    flux_err : array_like or None
        Their errors (used by :func:`select_reference` when ``reference`` is None).
    quality : array_like of int or None
        Quality bits.
    x, y, tmag : array_like
        Positions (px) and magnitudes, shape ``(n_stars,)``.
    n_neighbours : int
        Reference stars per star.
    reference : ReferenceEnsemble, optional
        The quiet stars (e.g. selected once from a sample of the whole CCD, then used for
        every chunk of stars); default: :func:`select_reference` on these stars.
    ids : array_like of int, optional
        Identifiers of these stars, matched against ``reference.ids`` so that no star is
        its own reference (default: row indices, as :func:`select_reference` assigns).
    bad_bits : int
        Bits that make a point unusable.
    good : array_like of bool, optional
        Usable points (default: :func:`good_points`).
    xy_scale, mag_scale : float
        Distance scales.
    clip : float
        Per-point rejection of neighbours, in units of each neighbour's noise.
    fit : bool
        Fit the local common mode and the basis vectors to each star (else the model is
        the local common mode as it is).
    gradient : bool
        Interpolate the neighbours to the star's position (cancelling a linear gradient of
        the systematics in ``x, y``) instead of averaging them.

    Returns
    -------
    numpy.ndarray
        ``(n_stars, n_cadences)`` model, 1 where there is no reference.

    Examples
    --------
    >>> rng = np.random.default_rng(4)
    >>> trend = 1 + 0.05 * np.linspace(-1, 1, 200) ** 2     # the same for every star
    >>> f = 500 * trend * (1 + 0.002 * rng.standard_normal((50, 200)))
    >>> pos = rng.uniform(0, 2048, (2, 50))
    >>> model = common_mode(f, None, None, pos[0], pos[1], np.full(50, 11.0))
    >>> resid = f / model / np.median(f / model, axis=1, keepdims=True)
    >>> bool(np.median(robust_std(resid, axis=1)) < 0.0022)
    True
    """
    f = _as_matrix(flux, "flux")
    n, c = f.shape
    xa, ya, ma = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, tmag))
    ida = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64).ravel()
    if not (xa.size == ya.size == ma.size == ida.size == n):
        raise ValueError("x, y, tmag (and ids) need one value per star (row of flux)")
    ok = good_points(f, quality, bad_bits=bad_bits) if good is None else np.asarray(good, bool)
    if reference is None:
        reference = select_reference(
            f, quality, xa, ya, ma, flux_err=flux_err, ids=ida, bad_bits=bad_bits, good=ok,
            n_neighbours=n_neighbours, xy_scale=xy_scale, mag_scale=mag_scale,
        )
    if len(reference) and reference.flux_norm.shape[1] != c:
        raise ValueError(
            f"reference has {reference.flux_norm.shape[1]} cadences, flux has {c}"
        )
    return _models(reference, [f], [ok], xa, ya, ma, ida, n_neighbours=n_neighbours,
                   xy_scale=xy_scale, mag_scale=mag_scale, clip=clip, fit=fit,
                   gradient=gradient)[0]


def common_mode_many(
    fluxes: Sequence[npt.ArrayLike],
    goods: Sequence[npt.ArrayLike],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    *,
    reference: ReferenceEnsemble,
    ids: npt.ArrayLike,
    n_neighbours: int = 30,
    xy_scale: float = 256.0,
    mag_scale: float = 0.5,
    clip: float = 4.0,
) -> list[FloatArray]:
    """:func:`common_mode` of several measurements of the same stars (e.g. in apertures of
    different sizes): the local common mode and the neighbours' prior, the expensive part,
    are computed once; each measurement is fitted on its own.

    Parameters
    ----------
    fluxes, goods : sequence of array_like
        One ``(n_stars, n_cadences)`` flux matrix and its usable points per measurement.
    x, y, tmag, reference, ids, n_neighbours, xy_scale, mag_scale, clip
        As for :func:`common_mode`.

    Returns
    -------
    list of numpy.ndarray
        One model per measurement.

    Examples
    --------
    >>> rng = np.random.default_rng(4)
    >>> trend = 1 + 0.05 * np.linspace(-1, 1, 200) ** 2
    >>> f = 500 * trend * (1 + 0.002 * rng.standard_normal((50, 200)))
    >>> pos = rng.uniform(0, 2048, (2, 50))
    >>> ref = select_reference(f, None, pos[0], pos[1], np.full(50, 11.0))
    >>> a, b = common_mode_many([f, 2 * f], [np.ones(f.shape, bool)] * 2, pos[0], pos[1],
    ...                         np.full(50, 11.0), reference=ref, ids=np.arange(50))
    >>> bool(np.allclose(a, b))     # a model is relative: the same for twice the flux
    True
    """
    mats = [_as_matrix(f, "flux") for f in fluxes]
    xa, ya, ma = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, tmag))
    ida = np.asarray(ids, np.int64).ravel()
    if not mats or any(m.shape != mats[0].shape for m in mats) or len(goods) != len(mats):
        raise ValueError("fluxes need one good mask each and the same shape")
    if not (xa.size == ya.size == ma.size == ida.size == mats[0].shape[0]):
        raise ValueError("x, y, tmag and ids need one value per star (row of flux)")
    if len(reference) and reference.flux_norm.shape[1] != mats[0].shape[1]:
        raise ValueError(
            f"reference has {reference.flux_norm.shape[1]} cadences, flux has {mats[0].shape[1]}"
        )
    return _models(reference, mats, [np.asarray(g, bool) for g in goods], xa, ya, ma, ida,
                   n_neighbours=n_neighbours, xy_scale=xy_scale, mag_scale=mag_scale, clip=clip,
                   fit=True, gradient=True)


def _models(
    reference: ReferenceEnsemble, fluxes: list[FloatArray], goods: list[BoolArray],
    x: FloatArray, y: FloatArray, tmag: FloatArray, ids: npt.NDArray[np.int64], *,
    n_neighbours: int, xy_scale: float, mag_scale: float, clip: float, fit: bool,
    gradient: bool,
) -> list[FloatArray]:
    n, c = fluxes[0].shape
    if len(reference) == 0 or n == 0:
        return [np.ones((n, c)) for _ in fluxes]
    local, nb = _local_mode(reference, x, y, tmag, ids, n_neighbours, xy_scale, mag_scale,
                            clip, gradient)
    if not fit:
        return [np.asarray(1.0 + local) for _ in fluxes]
    prior = None
    if reference.coef is not None and reference.coef.shape[1] == 1 + len(reference.basis):
        coef = np.where((nb >= 0)[:, :, None], reference.coef[np.maximum(nb, 0)], np.nan)
        with _quiet_nan_warnings():
            mu = np.nanmedian(coef, axis=1)
        spread = np.stack([robust_std(coef[:, :, j], axis=1) for j in range(coef.shape[2])],
                          axis=1)  # one per coefficient: a handful
        prior = (mu, spread**2 + 1e-12)
    models = []
    for f, ok in zip(fluxes, goods, strict=True):  # a handful of measurements
        fitted, _ = _fit_design(normalise(f, ok) - 1.0, local, reference.basis, prior=prior)
        model = 1.0 + fitted
        models.append(np.asarray(np.where(np.isfinite(model) & (model > 0), model, 1.0)))
    return models


# --------------------------------------------------------------------------------------------
# outliers
# --------------------------------------------------------------------------------------------


def clip_outliers(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    *,
    sigma: float = 5.0,
    neighbour_sigma: float = 3.0,
    neighbour_fraction: float = 0.2,
    window: int = 4,
    max_gap: float = 0.5,
    noise: npt.ArrayLike | None = None,
) -> BoolArray:
    """Isolated single-point outliers (up or down); eclipses and flares are kept.

    A point is an outlier when it is more than ``sigma`` times the noise away from its local
    baseline (the median of the 2nd to ``window``-th usable points on either side) while
    neither immediate neighbour is off in the same direction by more than
    ``neighbour_sigma`` times the noise and ``neighbour_fraction`` of the point's own
    deviation (they agree with the baseline). An eclipse or a transit (several
    consecutive low points, or a V whose sides are low too) and a flare (a fast rise and a
    decay over the next points) therefore survive; a cosmic ray or a glitch does not.
    Neighbours farther than ``max_gap`` days count as missing; a point needs at least one
    immediate neighbour and a baseline to be judged.

    Parameters
    ----------
    time : array_like
        Times, shape ``(n_cadences,)`` or that of ``flux``.
    flux : array_like
        One light curve or ``(n_stars, n_cadences)``; NaN marks unusable points (skipped).
    sigma : float
        Threshold of the point's deviation, in units of the noise.
    neighbour_sigma, neighbour_fraction : float
        A neighbour off by more than both (same direction; noise units and fraction of the
        point's deviation) makes the point part of an event.
    window : int
        Points on each side (the 2nd..``window``-th) that make the baseline.
    max_gap : float
        Days beyond which a neighbour does not count.
    noise : array_like, optional
        Noise per star (or per point); default: the point-to-point scatter of each row.

    Returns
    -------
    numpy.ndarray of bool
        True for outliers, same shape as ``flux``.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> t = np.arange(300) / 48.0
    >>> f = 1 + 0.001 * rng.standard_normal(300)
    >>> f[100] += 0.02                       # a cosmic ray
    >>> f[200:206] -= 0.03                   # an eclipse
    >>> np.flatnonzero(clip_outliers(t, f)).tolist()
    [100]
    """
    f_in = np.asarray(flux, dtype=np.float64)
    one = f_in.ndim == 1
    f = _as_matrix(f_in, "flux")
    n, c = f.shape
    t = np.asarray(time, dtype=np.float64)
    tm = np.broadcast_to(t if t.ndim == 2 else t[None, :], f.shape)
    valid = np.isfinite(f) & np.isfinite(tm)
    w = max(int(window), 2)
    prev = _neighbours(valid, w, backward=True)
    nxt = _neighbours(valid, w, backward=False)

    def values(idx: npt.NDArray[np.intp]) -> FloatArray:
        safe = np.maximum(idx, 0)
        v = np.take_along_axis(f, safe, axis=1)
        dt = np.abs(np.take_along_axis(tm, safe, axis=1) - tm)
        return np.where((idx >= 0) & (dt <= max_gap), v, np.nan)

    p1, n1 = values(prev[0]), values(nxt[0])
    outer = np.stack([values(i) for i in prev[1:] + nxt[1:]])
    with _quiet_nan_warnings():
        base = np.nanmedian(outer, axis=0)
    if noise is None:
        s = _p2p_noise(np.where(valid, f, np.nan))[:, None]
    else:
        s = np.asarray(noise, dtype=np.float64)
        if s.ndim == 1 and not one:
            s = s[:, None]  # one value per star
        s = np.broadcast_to(s, f.shape)
    d = f - base
    sign = np.sign(d)
    with np.errstate(invalid="ignore"):
        far = np.abs(d) > sigma * s
        event = np.maximum(neighbour_sigma * s, neighbour_fraction * np.abs(d))
        calm_p = ~(sign * (p1 - base) > event)
        calm_n = ~(sign * (n1 - base) > event)
    judged = valid & np.isfinite(base) & (np.isfinite(p1) | np.isfinite(n1))
    out = judged & far & calm_p & calm_n
    return np.asarray(out[0] if one else out)


# --------------------------------------------------------------------------------------------
# all together
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanedLightCurves:
    """Result of :func:`clean_lightcurves` (matrices of shape ``(n_stars, n_cadences)``).

    Attributes
    ----------
    flux_raw : numpy.ndarray
        The input flux, unchanged.
    flux_corrected : numpy.ndarray
        ``flux_raw / model`` (same unit).
    flux_err : numpy.ndarray or None
        Errors of the corrected flux (``flux_err / model``).
    flux_norm : numpy.ndarray
        Corrected flux over its median, NaN where ``mask`` is False.
    model : numpy.ndarray
        The common-mode model (:func:`common_mode`).
    mask : numpy.ndarray of bool
        Points kept: good bits, outside windows, not on a bad epoch, not an outlier.
    outliers : numpy.ndarray of bool
        Points clipped by :func:`clip_outliers`.
    epochs : EpochQuality
        Per-cadence metrics (of the corrected flux).
    stars : StarQuality
        Per-star metrics (of the corrected, cleaned flux).
    reference : ReferenceEnsemble
        The quiet stars used.
    """

    flux_raw: FloatArray
    flux_corrected: FloatArray
    flux_err: FloatArray | None
    flux_norm: FloatArray
    model: FloatArray
    mask: BoolArray
    outliers: BoolArray
    epochs: EpochQuality
    stars: StarQuality
    reference: ReferenceEnsemble


def clean_lightcurves(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    flux_err: npt.ArrayLike | None,
    quality: npt.ArrayLike | None,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    *,
    bad_bits: int = CLEANING_BAD_BITS,
    windows: Sequence[tuple[float, float]] = (),
    reference: ReferenceEnsemble | None = None,
    ids: npt.ArrayLike | None = None,
    n_neighbours: int = 30,
    outlier_sigma: float = 5.0,
    epoch_sigma: float = 5.0,
) -> CleanedLightCurves:
    """The whole cleaning of a set of light curves on a common cadence grid.

    Mask (bits and windows), common-mode correction, bad epochs, single-point outliers, star
    metrics; see the module's description. Raw and corrected fluxes are both returned.

    Parameters
    ----------
    time : array_like
        ``(n_cadences,)`` times (BTJD).
    flux, flux_err : array_like
        ``(n_stars, n_cadences)`` flux and errors (``flux_err`` may be None).
    quality : array_like of int or None
        Quality bits.
    x, y, tmag : array_like
        Positions and magnitudes of the stars.
    bad_bits : int
        Bits that make a point unusable.
    windows : sequence of (float, float)
        Known scattered-light windows to mask.
    reference : ReferenceEnsemble, optional
        Quiet stars selected beforehand (e.g. from the whole CCD); default: these stars'.
    ids : array_like of int, optional
        Star identifiers (to match ``reference.ids``).
    n_neighbours : int
        Reference stars per star.
    outlier_sigma, epoch_sigma : float
        Thresholds of :func:`clip_outliers` and :func:`epoch_quality`.

    Returns
    -------
    CleanedLightCurves
    """
    f = _as_matrix(flux, "flux")
    t = np.asarray(time, dtype=np.float64)
    ok = good_points(f, quality, time=t, bad_bits=bad_bits, windows=windows)
    xa, ya, ma = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, tmag))
    ida = np.arange(f.shape[0], dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    if reference is None:
        reference = select_reference(f, quality, xa, ya, ma, flux_err=flux_err, ids=ida,
                                     bad_bits=bad_bits, good=ok, n_neighbours=n_neighbours)
    model = common_mode(f, flux_err, quality, xa, ya, ma, n_neighbours=n_neighbours,
                        reference=reference, ids=ida, bad_bits=bad_bits, good=ok)
    corrected = f / model
    err = None if flux_err is None else _as_matrix(flux_err, "flux_err") / model
    fn = normalise(corrected, ok)
    epochs = epoch_quality(fn, quality, bad_bits=bad_bits, sigma=epoch_sigma)
    fn = np.where(epochs.bad[None, :], np.nan, fn)
    outliers = clip_outliers(t, fn, sigma=outlier_sigma)
    mask = np.isfinite(fn) & ~outliers
    fn = np.where(mask, fn, np.nan)
    with _quiet_nan_warnings():
        med = np.nanmedian(np.where(ok, corrected, np.nan), axis=1, keepdims=True)
    stars = star_quality(fn, quality, None if err is None else err / med)
    return CleanedLightCurves(
        flux_raw=f, flux_corrected=corrected, flux_err=err, flux_norm=fn, model=model,
        mask=mask, outliers=outliers, epochs=epochs, stars=stars, reference=reference,
    )
