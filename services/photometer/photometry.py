"""The photometer's science: background maps, star detection and forced aperture photometry.

Everything here is pure numpy (plus photutils' ``DAOStarFinder`` for detection) and works on
calibrated TESS Full-Frame Images held in memory: numpy arrays of shape ``(2078, 2136)`` in
e-/s whose science pixels are ``image[0:2048, 44:2092]``. There is no I/O and no asyncio.

Conventions
-----------
* Positions are 0-based ``x`` = column and ``y`` = row of the *full* array, with pixel centres
  at integer coordinates (pixel ``i`` spans ``[i - 0.5, i + 0.5]``), as in photutils.
* Only science pixels are ever used. Collateral columns and the virtual rows are ignored.
* Other array shapes (cut-outs, small synthetic images) need an explicit ``science_area``,
  a ``(rows, cols)`` pair of slices, so that a transposed or wrong-sized frame is never
  mistaken for a full FFI.

The per-frame hot path is :func:`forced_aperture_photometry` with precomputed
:class:`ApertureWeights` (see :func:`build_aperture_weights`): two gathers on the flattened
image with fixed flat indices, a row-wise sort of the annulus pixels and a few vectorised
sigma-clipping passes; there is no Python loop over stars or pixels. Several aperture radii
(``extra_radii``) share each star's pixel stamp and its annulus background, so that each
further radius costs only one weighted sum per star. Apertures follow each frame's
pointing: :func:`measure_frame_offset` measures the offset (and small rotation or scale
change) of the frame from tracking stars chosen once by :func:`select_tracking_stars`, and
``build_aperture_weights(..., grid=0.01)`` re-places thousands of apertures in a few
milliseconds. :func:`aperture_contamination` tells which apertures neighbours contaminate.

Examples
--------
>>> import numpy as np
>>> from tess_ffi.services.photometer.photometry import (
...     FFI_SHAPE, build_aperture_weights, forced_aperture_photometry)
>>> image = np.full(FFI_SHAPE, 150.0, dtype=np.float32)
>>> image[1000, 1000] += 5000.0                # a "star" confined to one pixel
>>> w = build_aperture_weights(np.array([1000.0]), np.array([1000.0]), 2.0, (4.0, 7.0))
>>> res = forced_aperture_photometry(image, np.array([1000.0]), np.array([1000.0]), weights=w)
>>> round(float(res.flux[0]), 2), float(res.bkg[0]), int(res.quality[0])
(5000.0, 150.0, 0)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import ndimage
from scipy.interpolate import make_interp_spline
from scipy.spatial import cKDTree
from scipy.special import chndtr, erf

from tess_ffi.shared.quality import QualityFlags

__all__ = [
    "FFI_SHAPE",
    "SCIENCE_ROWS",
    "SCIENCE_COLS",
    "DEFAULT_RADIUS",
    "DEFAULT_ANNULUS",
    "estimate_background",
    "detect_stars",
    "ApertureWeights",
    "build_aperture_weights",
    "PhotometryResult",
    "forced_aperture_photometry",
    "FrameOffset",
    "select_tracking_stars",
    "measure_frame_offset",
    "aperture_contamination",
]

#: numpy shape of a calibrated TESS FFI image extension (rows, columns).
FFI_SHAPE: tuple[int, int] = (2078, 2136)
#: Rows of the science pixels in a calibrated FFI.
SCIENCE_ROWS = slice(0, 2048)
#: Columns of the science pixels in a calibrated FFI (44 leading and trailing collateral columns).
SCIENCE_COLS = slice(44, 2092)
#: Default aperture radius in pixels (TESS PSF FWHM is about 1.5-2 px).
DEFAULT_RADIUS = 2.0
#: Default inner and outer radius of the local-background annulus in pixels.
DEFAULT_ANNULUS = (4.0, 7.0)

#: Effective exposure of a 1800-s FFI: 0.8 (cosmic-ray mitigation keeps 8 of 10 2-s reads)
#: x 0.99 (frame-transfer duty cycle) x 1800 s. Used only by the fallback noise model.
_FALLBACK_EXPOSURE_TIME = 1425.6
#: Read noise of one co-added 1800-s FFI pixel in electrons (about 10 e- per 2-s read over
#: 720 co-added reads). Used only by the fallback noise model.
_FALLBACK_READ_NOISE = 268.0
#: sqrt(pi / 2): standard error of a median over that of a mean for Gaussian samples.
_MEDIAN_ERR_FACTOR = math.sqrt(math.pi / 2.0)
#: Fewest annulus pixels that still give a local background (else flux is NaN).
_MIN_ANNULUS_PIXELS = 5
#: Pixels sigma-clipped per batch when estimating the background (bounds its memory).
_CLIP_CHUNK_VALUES = 1 << 20
#: Weights below this are exactly zero (float noise where a circle only touches a pixel).
_WEIGHT_EPS = 1e-9
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

ScienceArea = tuple[slice, slice]
_Box = tuple[int, int, int, int]  # r0, r1, c0, c1 (half-open)


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _resolve_science_area(shape: tuple[int, ...], science_area: ScienceArea | None) -> _Box:
    """Return the science area of an array of ``shape`` as ``(r0, r1, c0, c1)``."""
    if len(shape) != 2:
        raise ValueError(f"image must be 2-D, got {len(shape)}-D array of shape {tuple(shape)}")
    if science_area is None:
        if tuple(shape) != FFI_SHAPE:
            raise ValueError(
                f"image must have the calibrated-FFI shape {FFI_SHAPE} (rows, columns), got "
                f"{tuple(shape)}; pass science_area=(row_slice, col_slice) for other shapes"
            )
        return SCIENCE_ROWS.start, SCIENCE_ROWS.stop, SCIENCE_COLS.start, SCIENCE_COLS.stop
    if (
        not isinstance(science_area, tuple)
        or len(science_area) != 2
        or not all(isinstance(s, slice) for s in science_area)
    ):
        raise ValueError("science_area must be a (row_slice, col_slice) tuple of two slices")
    box: list[int] = []
    for s, n in zip(science_area, shape, strict=True):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"science_area slices must have step 1, got {s}")
        if stop <= start:
            raise ValueError(f"science_area slice {s} is empty for an axis of length {n}")
        box.extend((start, stop))
    return box[0], box[1], box[2], box[3]


def _check_image(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` as an ndarray of real numbers without copying, or raise ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {image.ndim}-D array of shape {image.shape}")
    if image.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {image.dtype}")
    return image


def _check_positions(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``x, y`` as finite float64 1-D arrays of equal length, or raise ValueError."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or ya.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays, got shapes {xa.shape} and {ya.shape}")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    bad = ~(np.isfinite(xa) & np.isfinite(ya))
    if bad.any():
        raise ValueError(
            f"x and y must be finite; {int(bad.sum())} non-finite position(s), first at "
            f"index {int(np.argmax(bad))}"
        )
    return xa, ya


def _check_radii(radius: float, annulus: tuple[float, float]) -> tuple[float, tuple[float, float]]:
    """Validate an aperture radius and background annulus."""
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a number, got {radius!r}") from None
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"radius must be finite and > 0, got {radius!r}")
    try:
        r_in, r_out = (float(a) for a in annulus)
    except (TypeError, ValueError):
        raise ValueError(f"annulus must be a pair (inner, outer), got {annulus!r}") from None
    if not (math.isfinite(r_in) and math.isfinite(r_out)):
        raise ValueError(f"annulus radii must be finite, got {annulus!r}")
    if r_in <= r:
        raise ValueError(f"annulus inner radius ({r_in}) must be > aperture radius ({r})")
    if r_out <= r_in:
        raise ValueError(f"annulus outer radius ({r_out}) must be > inner radius ({r_in})")
    return r, (r_in, r_out)


def _check_extra_radii(
    extra_radii: object, radius: float, annulus: tuple[float, float]
) -> tuple[float, ...]:
    """Validate extra aperture radii (after :func:`_check_radii` of ``radius, annulus``)."""
    if isinstance(extra_radii, (str, bytes)) or not isinstance(extra_radii, Iterable):
        raise ValueError(
            f"extra_radii must be a sequence of radii (e.g. (1.5, 3.0)), got {extra_radii!r}"
        )
    out: list[float] = []
    for i, value in enumerate(extra_radii):
        try:
            r = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"extra_radii[{i}] must be a number, got {value!r}") from None
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"extra_radii[{i}] must be finite and > 0, got {value!r}")
        if r >= annulus[0]:
            raise ValueError(
                f"extra_radii[{i}] ({r}) must be < the annulus inner radius ({annulus[0]})"
            )
        if r == radius or r in out:
            raise ValueError(
                f"extra_radii[{i}] ({r}) repeats a radius already measured "
                f"(radius={radius}, extra_radii so far {tuple(out)})"
            )
        out.append(r)
    return tuple(out)


def _flat_view(image: np.ndarray) -> np.ndarray:
    """The image as 1-D; a view for C-contiguous arrays (the usual case), else one copy."""
    return image.reshape(-1) if image.flags.c_contiguous else np.ravel(image, order="C")


# --------------------------------------------------------------------------------------------
# vectorised sigma clipping of many rows at once
# --------------------------------------------------------------------------------------------


def _sigma_clip_rows(
    values: np.ndarray, sigma: float, maxiters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Iterative median-centred sigma clipping applied independently to every row.

    ``values`` is ``(n, m)``; non-finite entries are ignored. Each row is sorted once, so the
    values surviving the clipping of a row are always one contiguous run ``[lo, hi)`` of the
    sorted row: the median is read off the middle of the run, the run's sum and sum of
    squares are differences of two prefix sums, and the new run ends are found by a
    vectorised bisection, so an iteration costs O(log m) per row still changing (rows drop
    out as soon as they converge). Values clipped once stay clipped, as in
    ``astropy.stats.sigma_clip(cenfunc='median', stdfunc='std')``, which this reproduces.

    Returns ``median, mean, std, count`` of the clipped rows (float64, float64, float64, int);
    rows without finite values give NaN and 0.
    """
    n, m = values.shape
    if m == 0 or n == 0:
        nan = np.full(n, np.nan)
        return nan, nan.copy(), nan.copy(), np.zeros(n, dtype=np.intp)
    ftype = np.float32 if values.dtype == np.float32 else np.float64
    s: np.ndarray = np.where(np.isfinite(values), values, np.inf).astype(ftype, copy=False)
    s.sort(axis=1)  # non-finite values (now +inf) sort to the end
    return _clip_sorted_rows(s, sigma, maxiters)


def _run_ends(
    flat: np.ndarray, base: np.ndarray, m: int, lo: np.ndarray, hi: np.ndarray,
    lower: np.ndarray, upper: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For sorted rows of length ``m`` whose kept run is ``[lo, hi)``, the run the bounds
    keep: the number of values ``< lower`` and ``<= upper``, each clipped to ``[lo, hi]``.

    Both ends are found together by a branch-free binary search (a fixed number of steps,
    each a handful of vectorised operations). ``flat`` is the row-major flattened array,
    ``base`` each row's offset into it; ``lower`` and ``upper`` have its dtype.
    """
    k = lo.size
    # v <= upper  <=>  v < nextafter(upper, +inf) for floats of the same dtype.
    bound = np.concatenate([lower, np.nextafter(upper, upper.dtype.type(np.inf))])
    pos = np.concatenate([lo, lo])
    end = np.concatenate([hi, hi])
    offset = np.concatenate([base, base]) - 1
    step = 1 << max(int(m).bit_length() - 1, 0)
    while step:
        cand = pos + step  # every value in [lo, cand) below the bound?
        v = flat[offset + np.minimum(cand, m)]
        take = v < bound
        take &= cand <= end
        pos = np.where(take, cand, pos)
        step >>= 1
    return pos[:k], pos[k:]


def _clip_sorted_rows(
    s: np.ndarray, sigma: float, maxiters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_sigma_clip_rows` on rows already sorted, with every non-finite value replaced
    by ``+inf`` (so it sits at the end of its row). ``s`` is float32 or float64, C-contiguous
    or a block of columns of a C-contiguous array (read without a copy)."""
    n, m = s.shape
    if n and not s.flags.c_contiguous and (
        s.strides[1] != s.itemsize or s.strides[0] % s.itemsize or s.strides[0] < m * s.itemsize
    ):
        s = np.ascontiguousarray(s)
    # Row r of ``s`` starts at r * row_step in ``flat`` (one 1-D view of its values).
    if s.flags.c_contiguous or n == 0:
        flat, row_step = s.reshape(-1), m
    else:
        row_step = s.strides[0] // s.itemsize
        flat = np.lib.stride_tricks.as_strided(
            s, shape=((n - 1) * row_step + m,), strides=(s.itemsize,), writeable=False
        )
    ftype = s.dtype.type
    rows = np.arange(n)
    lo = np.zeros(n, dtype=np.intp)
    hi = np.count_nonzero(s < np.inf, axis=1).astype(np.intp)

    def median_of(r: np.ndarray, lo_: np.ndarray, hi_: np.ndarray) -> np.ndarray:
        cnt = hi_ - lo_
        i0 = np.clip(lo_ + (cnt - 1) // 2, 0, m - 1)
        i1 = np.clip(lo_ + cnt // 2, 0, m - 1)
        med = 0.5 * (s[r, i0].astype(np.float64) + s[r, i1])
        return np.where(cnt > 0, med, np.nan)

    med = median_of(rows, lo, hi)
    # Values relative to the first median keep the one-pass variance well conditioned. Their
    # prefix sums (and of their squares) along each row are accumulated in float64, one
    # column at a time across all rows; entries past a row's finite part are never read.
    shift = np.nan_to_num(med).astype(ftype)
    if m <= 512:
        # Short rows (annuli): accumulate column by column, vectorised across the rows;
        # numpy's own cumsum along short rows is several times slower. p[j, r].
        cols_first = np.ascontiguousarray(s.T)
        p1 = np.empty((m + 1, n))
        p2 = np.empty((m + 1, n))
        p1[0] = 0.0
        p2[0] = 0.0
        d = np.empty(n, dtype=ftype)
        with np.errstate(invalid="ignore", over="ignore"):
            for j in range(m):
                np.subtract(cols_first[j], shift, out=d)
                np.add(p1[j], d, out=p1[j + 1])
                np.multiply(d, d, out=d)
                np.add(p2[j], d, out=p2[j + 1])
        del cols_first, d

        def prefix(p: np.ndarray, r: np.ndarray, i: np.ndarray) -> np.ndarray:
            return p[i, r]
    else:
        # Long rows (background boxes): numpy's cumsum along each row. p[r, j].
        with np.errstate(invalid="ignore", over="ignore"):
            d = s - shift[:, None]
            p1 = np.zeros((n, m + 1))
            np.cumsum(d, axis=1, dtype=np.float64, out=p1[:, 1:])
            np.multiply(d, d, out=d)
            p2 = np.zeros((n, m + 1))
            np.cumsum(d, axis=1, dtype=np.float64, out=p2[:, 1:])
        del d

        def prefix(p: np.ndarray, r: np.ndarray, i: np.ndarray) -> np.ndarray:
            return p[r, i]

    def moments(r: np.ndarray, lo_: np.ndarray, hi_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cnt = hi_ - lo_
        s1 = prefix(p1, r, hi_) - prefix(p1, r, lo_)
        s2 = prefix(p2, r, hi_) - prefix(p2, r, lo_)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / cnt
            std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
        return mean, std

    mean, std = moments(rows, lo, hi)
    lower_b = np.full(n, -np.inf)
    upper_b = np.full(n, np.inf)
    active = rows
    for _ in range(maxiters):
        if active.size == 0:
            break
        # Cumulative bounds: the kept set is the intersection of all clipping intervals.
        new_lower = np.maximum(lower_b[active], med[active] - sigma * std[active])
        new_upper = np.minimum(upper_b[active], med[active] + sigma * std[active])
        a_lo, a_hi = lo[active], hi[active]
        # The new run is [#values < lower, #values <= upper), intersected with the old one.
        new_lo, new_hi = _run_ends(
            flat, active * row_step, m, a_lo, a_hi, new_lower.astype(ftype),
            new_upper.astype(ftype),
        )
        changed = ((new_lo != a_lo) | (new_hi != a_hi)) & ((new_hi - new_lo) >= 1)
        active = active[changed]
        if active.size == 0:
            break
        lower_b[active] = new_lower[changed]
        upper_b[active] = new_upper[changed]
        lo[active] = new_lo[changed]
        hi[active] = new_hi[changed]
        med[active] = median_of(active, lo[active], hi[active])
        mean[active], std[active] = moments(active, lo[active], hi[active])
    cnt = hi - lo
    return med, np.where(cnt > 0, mean + shift, np.nan), np.where(cnt > 0, std, np.nan), cnt


# --------------------------------------------------------------------------------------------
# background
# --------------------------------------------------------------------------------------------


def _interp_axis(nodes: np.ndarray, values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Cubic (linear for 2-3 nodes, constant for 1) interpolation onto ``arange(n_out)``."""
    if nodes.size == 1:
        shape = list(values.shape)
        shape[axis] = n_out
        return np.broadcast_to(values, shape)
    k = 3 if nodes.size >= 4 else 1
    spline = make_interp_spline(
        nodes, values, k=k, axis=axis, bc_type="natural" if k == 3 else None
    )
    return spline(np.arange(n_out, dtype=np.float64), extrapolate=True)


def _fill_meshes(values: np.ndarray, good: np.ndarray, half: int = 2) -> np.ndarray:
    """Fill bad boxes of the grid by local plane fits to the good ones (exact for planes).

    Works inwards from the good boxes: each pass fits, for every bad box, a least-squares plane
    to the good boxes within ``half`` boxes of it (box sums via uniform filters), fills those
    whose fit is well determined and marks them good. Boxes that never get a determined fit
    take the value of the nearest good box.
    """
    values = np.asarray(np.where(good, values, 0.0), dtype=np.float64)
    good = good.copy()
    grid = np.indices(values.shape, dtype=np.float64)
    v, u = grid[0], grid[1]
    size = 2 * half + 1
    for _ in range(max(values.shape)):
        if good.all():
            break
        w = good.astype(np.float64)
        products = (w, w * u, w * v, w * u * u, w * u * v, w * v * v, w * values,
                    w * u * values, w * v * values)  # fmt: skip
        m = [np.asarray(ndimage.uniform_filter(p, size, mode="constant")) for p in products]
        bad = ~good
        a = np.stack([m[0], m[1], m[2], m[1], m[3], m[4], m[2], m[4], m[5]], axis=-1)[bad]
        a = a.reshape(-1, 3, 3)
        rhs = np.stack([m[6], m[7], m[8]], axis=-1)[bad]
        # Well determined: at least 3 good boxes not on one line (scale-free determinant test).
        det = np.linalg.det(a)
        ok = (a[:, 0, 0] * size * size >= 2.5) & (
            np.abs(det) > 1e-6 * np.maximum(a[:, 0, 0], 1e-12) ** 3
        )
        if not ok.any():
            break
        coef: np.ndarray = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]
        iy, ix = np.nonzero(bad)
        iy, ix = iy[ok], ix[ok]
        values[iy, ix] = coef[:, 0] + coef[:, 1] * u[iy, ix] + coef[:, 2] * v[iy, ix]
        good[iy, ix] = True
    if not good.all():
        _, (iy, ix) = ndimage.distance_transform_edt(~good, return_indices=True)
        values = values[iy, ix]
    return values


def _median_filter_mesh(mesh: np.ndarray, size: int) -> np.ndarray:
    """Median filter of the box grid, padded by odd (point) reflection.

    Odd reflection continues a plane linearly past the edges, so a sloped background is left
    unchanged up to the edges and corners (edge-value padding would bias them by about half
    a box of slope).
    """
    half = size // 2
    pads = [(half, half) if n > half else (0, 0) for n in mesh.shape]
    padded = np.pad(mesh, pads, mode="reflect", reflect_type="odd")
    filtered = ndimage.median_filter(padded, size=size, mode="nearest")
    return filtered[
        pads[0][0] : filtered.shape[0] - pads[0][1], pads[1][0] : filtered.shape[1] - pads[1][1]
    ]


def estimate_background(
    image: np.ndarray,
    box_size: int = 64,
    *,
    filter_size: int = 3,
    sigma: float = 3.0,
    maxiters: int = 10,
    estimator: Literal["sextractor", "median", "mean"] = "sextractor",
    rms_method: Literal["diff", "std"] = "diff",
    mask: np.ndarray | None = None,
    min_valid_fraction: float = 0.5,
    science_area: ScienceArea | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatially varying background and background rms over the science area.

    The science area is cut into ``box_size`` x ``box_size`` boxes (the last row and column of
    boxes is smaller when ``box_size`` does not divide it). In each box the pixels are
    sigma-clipped about their median; the box background is the SExtractor mode
    ``2.5 median - 1.5 mean`` (the median when the clipped distribution is skewed, i.e.
    ``(mean - median) / std > 0.3``), the plain median or the mean. The box rms is by default
    the clipped standard deviation of differences between horizontally adjacent pixels divided
    by sqrt(2) (``rms_method='diff'``): TESS sky noise is only ~0.4 e-/s, so a scattered-light
    gradient of a few e-/s across a box would otherwise dominate the plain clipped standard
    deviation (``rms_method='std'``) and raise detection thresholds. Boxes with fewer than
    ``min_valid_fraction`` usable pixels are filled from the nearest good box, the box grid
    is median filtered (``filter_size``) and interpolated to every pixel with a separable
    cubic spline through the box centres. This is the algorithm of
    ``photutils.background.Background2D`` with its default ``SExtractorBackground``, written
    as one vectorised pass.

    Parameters
    ----------
    image : numpy.ndarray
        Calibrated FFI, shape ``(2078, 2136)``, e-/s (any shape with ``science_area``).
    box_size : int, optional
        Box side in pixels (>= 4). The default gives a 32 x 32 grid on the 2048 x 2048
        science area.
    filter_size : int, optional
        Size of the median filter applied to the box grid (odd, 1 disables it).
    sigma : float, optional
        Clipping threshold in standard deviations.
    maxiters : int, optional
        Maximum number of clipping iterations (stops early when nothing changes).
    estimator : {'sextractor', 'median', 'mean'}, optional
        Statistic of the clipped pixels used as the box background.
    rms_method : {'diff', 'std'}, optional
        Box rms from adjacent-pixel differences (insensitive to gradients) or the clipped
        standard deviation of the pixels (as photutils' ``StdBackgroundRMS``).
    mask : numpy.ndarray of bool, optional
        Same shape as ``image``; True marks pixels to ignore (e.g. bright stars). Non-finite
        pixels are always ignored.
    min_valid_fraction : float, optional
        Fraction of a box's pixels that must be usable for the box to count.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required when ``image`` is not FFI-shaped.

    Returns
    -------
    background, rms : numpy.ndarray
        float32 arrays of ``image.shape``; NaN outside the science area.

    Raises
    ------
    ValueError
        On a wrong image shape or dtype, bad parameters, a mask of the wrong shape or a
        science area without usable pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from tess_ffi.services.photometer.photometry import FFI_SHAPE, estimate_background
    >>> rng = np.random.default_rng(0)
    >>> rows, cols = np.indices(FFI_SHAPE)
    >>> sky = (100.0 + 0.02 * cols + 0.01 * rows).astype(np.float32)   # a sloped sky
    >>> image = sky + rng.normal(0.0, 2.0, FFI_SHAPE).astype(np.float32)
    >>> bkg, rms = estimate_background(image)
    >>> bool(np.isnan(bkg[0, 0])), bool(np.isnan(bkg[2050, 1000]))   # collateral pixels
    (True, True)
    >>> err = (bkg - sky)[0:2048, 44:2092]                   # 0.01 of the pixel noise
    >>> round(float(np.std(err)), 2), round(float(np.nanmedian(rms)), 1)
    (0.06, 2.0)
    """
    image = _check_image(image)
    r0, r1, c0, c1 = _resolve_science_area(image.shape, science_area)
    if isinstance(box_size, bool) or not isinstance(box_size, (int, np.integer)) or box_size < 4:
        raise ValueError(f"box_size must be an integer >= 4, got {box_size!r}")
    if not isinstance(filter_size, (int, np.integer)) or filter_size < 1 or filter_size % 2 == 0:
        raise ValueError(f"filter_size must be a positive odd integer, got {filter_size!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
    if not isinstance(maxiters, (int, np.integer)) or maxiters < 1:
        raise ValueError(f"maxiters must be a positive integer, got {maxiters!r}")
    if estimator not in ("sextractor", "median", "mean"):
        raise ValueError(f"estimator must be 'sextractor', 'median' or 'mean', got {estimator!r}")
    if rms_method not in ("diff", "std"):
        raise ValueError(f"rms_method must be 'diff' or 'std', got {rms_method!r}")
    if not (0.0 < min_valid_fraction <= 1.0):
        raise ValueError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction!r}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
        mask = mask.astype(bool, copy=False)

    h, w = r1 - r0, c1 - c0
    b = int(box_size)
    if b > min(h, w):
        raise ValueError(f"box_size {b} exceeds the science area ({h} x {w} pixels)")
    ny, nx = -(-h // b), -(-w // b)
    # One float32 copy of the science area, padded with NaN to whole boxes.
    work = np.full((ny * b, nx * b), np.nan, dtype=np.float32)
    work[:h, :w] = image[r0:r1, c0:c1]
    if mask is not None:
        work[:h, :w][mask[r0:r1, c0:c1]] = np.nan
    blocks4 = work.reshape(ny, b, nx, b)
    # Boxes are clipped a few rows of boxes at a time (about 1 M pixels), which bounds the
    # memory of the clipping whatever the image size; rows are independent, so the result
    # is the same as in one go.
    step = max(1, _CLIP_CHUNK_VALUES // (nx * b * b))
    stats, dstds = [], []
    for j0 in range(0, ny, step):
        part = blocks4[j0 : j0 + step]
        stats.append(_sigma_clip_rows(part.transpose(0, 2, 1, 3).reshape(-1, b * b), sigma,
                                      maxiters))
        if rms_method == "diff":
            # Differences of horizontally adjacent pixels: a gradient across the box only
            # shifts them, so their clipped spread / sqrt(2) is the pixel noise alone.
            diffs = np.diff(part, axis=3).transpose(0, 2, 1, 3).reshape(-1, b * (b - 1))
            dstds.append(_sigma_clip_rows(diffs, sigma, maxiters)[2])
            del diffs
    med, mean, std, cnt = (np.concatenate(column) for column in zip(*stats, strict=True))
    rms_values = np.concatenate(dstds) / math.sqrt(2.0) if rms_method == "diff" else std
    del work, blocks4, stats, dstds

    if estimator == "median":
        mesh = med
    elif estimator == "mean":
        mesh = mean
    else:  # SExtractor's mode estimate, as photutils.background.SExtractorBackground
        with np.errstate(invalid="ignore", divide="ignore"):
            skew = (mean - med) / std
        mesh = np.where(std == 0, mean, np.where(skew > 0.3, med, 2.5 * med - 1.5 * mean))
    # Boxes without enough usable pixels are replaced by their nearest good neighbour.
    box_h = np.minimum(b, h - np.arange(ny) * b)
    box_w = np.minimum(b, w - np.arange(nx) * b)
    real = (box_h[:, None] * box_w[None, :]).reshape(-1)
    good = (
        (cnt >= np.maximum(min_valid_fraction * real, 3))
        & np.isfinite(mesh)
        & np.isfinite(rms_values)
    )
    if not good.any():
        raise ValueError("no box of the science area has enough finite, unmasked pixels")
    mesh = mesh.reshape(ny, nx)
    rms_mesh = rms_values.reshape(ny, nx)
    good = good.reshape(ny, nx)
    if not good.all():
        mesh = _fill_meshes(mesh, good)
        rms_mesh = _fill_meshes(rms_mesh, good)
    if filter_size > 1:
        mesh = _median_filter_mesh(mesh, int(filter_size))
        rms_mesh = _median_filter_mesh(rms_mesh, int(filter_size))

    # Box centres (the last box may be partial) and separable spline interpolation.
    yc = np.arange(ny) * b + (box_h - 1) / 2.0
    xc = np.arange(nx) * b + (box_w - 1) / 2.0
    background = np.full(image.shape, np.nan, dtype=np.float32)
    rms = np.full(image.shape, np.nan, dtype=np.float32)
    background[r0:r1, c0:c1] = _interp_axis(xc, _interp_axis(yc, mesh, h, 0), w, 1)
    rms_full = _interp_axis(xc, _interp_axis(yc, rms_mesh, h, 0), w, 1)
    rms[r0:r1, c0:c1] = np.maximum(rms_full, 0.0)
    return background, rms


# --------------------------------------------------------------------------------------------
# aperture geometry
# --------------------------------------------------------------------------------------------


def _disk_lower_left_area(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Area of ``{X < x, Y < y}`` inside the disk of radius ``r`` centred on the origin."""
    r2 = r * r

    def prim(t: np.ndarray) -> np.ndarray:  # antiderivative of sqrt(r^2 - t^2) on [-r, r]
        t = np.clip(t, -r, r)
        return 0.5 * (t * np.sqrt(np.maximum(r2 - t * t, 0.0)) + r2 * np.arcsin(t / r))

    xc = np.clip(x, -r, r)
    yn = -np.abs(np.clip(y, -r, r))  # work with Y < -|y| and reflect for y > 0
    a = np.sqrt(np.maximum(r2 - yn * yn, 0.0))  # half-width of the chord at height yn
    m = np.clip(xc, -a, a)
    below = prim(m) - prim(-a) + yn * (m + a)  # area of {X < x, Y < -|y|}
    left = 2.0 * (prim(xc) + 0.25 * math.pi * r2)  # area of {X < x}
    return np.where(y <= 0, below, left - below)


def _exact_weights(dx0: np.ndarray, dy0: np.ndarray, size: int, r: float) -> np.ndarray:
    """Exact pixel/disk overlap for stamps of ``size`` x ``size`` pixels.

    ``dx0, dy0`` (n,) are the coordinates of the stamp's lower-left pixel *edge* relative to
    the disk centre. Returns ``(n, size, size)`` float64 fractions in [0, 1].
    """
    edges = np.arange(size + 1, dtype=np.float64)
    ex = dx0[:, None] + edges  # (n, size+1)
    ey = dy0[:, None] + edges
    g = _disk_lower_left_area(ex[:, None, :], ey[:, :, None], r)  # (n, size+1, size+1)
    area = g[:, 1:, 1:] - g[:, :-1, 1:] - g[:, 1:, :-1] + g[:, :-1, :-1]
    return np.clip(area, 0.0, 1.0)


def _subpixel_weights(
    dx0: np.ndarray, dy0: np.ndarray, size: int, r: float, subpixels: int
) -> np.ndarray:
    """Fraction of ``subpixels`` x ``subpixels`` sub-pixel centres inside the disk."""
    sub = (np.arange(subpixels) + 0.5) / subpixels
    px = (np.arange(size)[:, None] + sub[None, :]).reshape(-1)  # (size * subpixels,)
    sx = dx0[:, None] + px
    sy = dy0[:, None] + px
    inside = (sx[:, None, :] ** 2 + sy[:, :, None] ** 2) < r * r  # (n, S*sp, S*sp)
    n = dx0.size
    inside = inside.reshape(n, size, subpixels, size, subpixels)
    return inside.mean(axis=(2, 4))


def _stamp_indices(
    ic: np.ndarray, ir: np.ndarray, half: int, shape: tuple[int, int], box: _Box
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (clipped into the array) and in-science-area mask of square stamps."""
    k = np.arange(-half, half + 1)
    rows = ir[:, None, None] + k[None, :, None]
    cols = ic[:, None, None] + k[None, None, :]
    r0, r1, c0, c1 = box
    in_sci = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
    flat = np.clip(rows, 0, shape[0] - 1) * shape[1] + np.clip(cols, 0, shape[1] - 1)
    n = ic.size
    size = 2 * half + 1
    return flat.reshape(n, size * size).astype(np.intp), in_sci.reshape(n, size * size)


@dataclass(frozen=True, eq=False)
class ApertureWeights:
    """Precomputed aperture and annulus pixels for a fixed star list on a fixed frame layout.

    Build it once with :func:`build_aperture_weights` and pass it to every call of
    :func:`forced_aperture_photometry`. All arrays are read-only.

    Every star has one square pixel stamp, large enough for its largest aperture, shared by
    all its apertures: the main one of ``radius`` and those of ``extra_radii`` (if any). Each
    radius has its own weights over that stamp (zero outside its circle); per-radius arrays
    are stacked in the order of :attr:`radii` (the main radius first).

    Attributes
    ----------
    shape : tuple of int
        Shape of the images the indices refer to.
    science_box : tuple of int
        ``(r0, r1, c0, c1)`` of the science area (half-open).
    x, y : numpy.ndarray
        float64 positions the weights were built for (full-array column, row).
    radius : float
        Main aperture radius in pixels.
    extra_radii : tuple of float
        Further aperture radii in pixels (empty for a single aperture).
    annulus : tuple of float
        Inner and outer radius of the background annulus (shared by all apertures).
    method : str
        ``'exact'`` or ``'subpixel'``.
    pix_index : numpy.ndarray
        ``(n_stars, stamp_size**2 + n_annulus_max)`` flat pixel indices (``np.intp``) of
        each star's aperture stamp (row-major) then of its annulus pixels: one gather fetches
        both, star by star, on the same image rows (see :attr:`ap_index`, :attr:`ann_index`).
    radii_weight : numpy.ndarray
        ``(n_radii, n_stars, stamp_size**2)`` float32 pixel weights of every radius (fraction
        of the pixel inside the circle; 0 outside the circle and outside the science area).
    radii_npix : numpy.ndarray
        ``(n_radii, n_stars)`` float32 effective aperture areas (sums of the weights), px.
    ann_mask : numpy.ndarray
        ``(n_stars, n_annulus_max)`` bool; True for real annulus pixels inside the science area.
    radii_edge : numpy.ndarray
        ``(n_radii, n_stars)`` bool; the aperture of that radius is cut by the edge of the
        science area.
    outside : numpy.ndarray
        bool; the centre is outside the science area (nothing is measured).
    """

    shape: tuple[int, int]
    science_box: tuple[int, int, int, int]
    x: np.ndarray
    y: np.ndarray
    radius: float
    extra_radii: tuple[float, ...]
    annulus: tuple[float, float]
    method: str
    pix_index: np.ndarray
    radii_weight: np.ndarray
    radii_npix: np.ndarray
    ann_mask: np.ndarray
    radii_edge: np.ndarray
    outside: np.ndarray

    def __post_init__(self) -> None:
        for name in (
            "x", "y", "pix_index", "radii_weight", "radii_npix", "ann_mask", "radii_edge",
            "outside",
        ):  # fmt: skip
            getattr(self, name).setflags(write=False)

    @property
    def radii(self) -> tuple[float, ...]:
        """All aperture radii: ``(radius, *extra_radii)``."""
        return (self.radius, *self.extra_radii)

    @property
    def ap_index(self) -> np.ndarray:
        """``(n_stars, stamp_size**2)`` flat pixel indices of the aperture stamps (a view)."""
        return self.pix_index[:, : self.radii_weight.shape[2]]

    @property
    def ann_index(self) -> np.ndarray:
        """``(n_stars, n_annulus_max)`` flat indices of the annulus pixels (pixel centre in
        ``inner <= d < outer``), padded (a view)."""
        return self.pix_index[:, self.radii_weight.shape[2] :]

    @property
    def ap_weight(self) -> np.ndarray:
        """``(n_stars, stamp_size**2)`` float32 weights of the main aperture."""
        return self.radii_weight[0]

    @property
    def ap_mask(self) -> np.ndarray:
        """``ap_weight > 0``: the pixels of the main aperture (computed on each access)."""
        return self.ap_weight > 0

    @property
    def extra_weight(self) -> np.ndarray:
        """``(n_extra, n_stars, stamp_size**2)`` float32 weights of the extra apertures."""
        return self.radii_weight[1:]

    @property
    def npix(self) -> np.ndarray:
        """float32 effective area of the main aperture, px (``ap_weight.sum(axis=1)``)."""
        return self.radii_npix[0]

    @property
    def extra_npix(self) -> np.ndarray:
        """``(n_extra, n_stars)`` float32 effective areas of the extra apertures, px."""
        return self.radii_npix[1:]

    @property
    def edge(self) -> np.ndarray:
        """bool; the main aperture is cut by the edge of the science area."""
        return self.radii_edge[0]

    @property
    def extra_edge(self) -> np.ndarray:
        """``(n_extra, n_stars)`` bool; that extra aperture is cut by the science-area edge."""
        return self.radii_edge[1:]

    @property
    def n_stars(self) -> int:
        """Number of stars."""
        return int(self.x.size)

    @property
    def stamp_size(self) -> int:
        """Side of the square aperture stamp in pixels."""
        return int(round(math.sqrt(self.radii_weight.shape[2])))

    @property
    def n_annulus(self) -> np.ndarray:
        """Number of usable annulus pixels per star (int)."""
        return np.count_nonzero(self.ann_mask, axis=1)

    def __len__(self) -> int:
        return self.n_stars

    def __repr__(self) -> str:
        extra = f", extra_radii={self.extra_radii}" if self.extra_radii else ""
        return (
            f"ApertureWeights(n_stars={self.n_stars}, radius={self.radius}{extra}, "
            f"annulus={self.annulus}, method={self.method!r}, stamp_size={self.stamp_size})"
        )


def _grid_steps(grid: object) -> int:
    """``1 / grid`` for a valid position grid (an integer from 2 to 1000), or ValueError."""
    try:
        g = float(grid)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"grid must be a number, got {grid!r}") from None
    m = round(1.0 / g) if math.isfinite(g) and g > 0 else 0
    if not (2 <= m <= 1000 and abs(m * g - 1.0) < 1e-9):
        raise ValueError(f"grid must be 1/m px for an integer m from 2 to 1000, got {grid!r}")
    return int(m)


def _phases(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel phases ``px, py`` (P,) of the ``1/m`` grid, row ``jy * m + jx``."""
    phase = (np.arange(m) - (m // 2)) / m
    return np.tile(phase, m), np.repeat(phase, m)


@functools.lru_cache(maxsize=8)
def _phase_weights(
    r: float, method: str, subpixels: int, m: int, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture weights of radius ``r`` on stamps of ``2 half + 1`` pixels for every sub-pixel
    phase on a ``1/m`` grid: ``(P, S*S)`` float32 as :func:`build_aperture_weights` computes
    them, and their sums ``(P,)`` float32 (the aperture areas). Both read-only.

    Row ``jy * m + jx`` is the star at phase ``((jx + k0) / m, (jy + k0) / m)`` from its
    nearest pixel, ``k0 = -(m // 2)``.
    """
    px, py = _phases(m)
    size = 2 * half + 1
    dx0 = -half - 0.5 - px
    dy0 = -half - 0.5 - py
    if method == "exact":
        wts = _exact_weights(dx0, dy0, size, r)
    else:
        wts = _subpixel_weights(dx0, dy0, size, r, subpixels)
    wts = wts.reshape(px.size, size * size)
    wts[wts < _WEIGHT_EPS] = 0.0
    w32 = wts.astype(np.float32)
    npix = w32.sum(axis=1, dtype=np.float64).astype(np.float32)
    for a in (w32, npix):
        a.setflags(write=False)
    return w32, npix


@functools.lru_cache(maxsize=8)
def _phase_annulus(
    r_in: float, r_out: float, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Annulus cells for every sub-pixel phase on a ``1/m`` grid (rows as
    :func:`_phase_weights`): the compacted annulus of each phase as cell offsets ``dy, dx``
    (P, W) int8 in stamp order then padding (offset 0), ``mask`` (P, W) bool and ``count``
    (P,) of real cells. All read-only.
    """
    px, py = _phases(m)
    ahalf = int(math.ceil(r_out))
    asize = 2 * ahalf + 1
    k = np.arange(-ahalf, ahalf + 1, dtype=np.float64)
    ddx = -px[:, None] + k
    ddy = -py[:, None] + k
    d2 = ddy[:, :, None] ** 2 + ddx[:, None, :] ** 2
    in_ann = ((d2 >= r_in * r_in) & (d2 < r_out * r_out)).reshape(px.size, asize * asize)
    count = np.count_nonzero(in_ann, axis=1)
    width = int(count.max())
    # The same compaction as build_aperture_weights: one boolean selection of exactly
    # ``width`` entries per row (the annulus cells in stamp order, then padding).
    select = np.concatenate([in_ann, np.arange(width)[None, :] >= count[:, None]], axis=1)
    ki = np.arange(-ahalf, ahalf + 1, dtype=np.int8)
    cell_dy = np.concatenate([np.repeat(ki, asize), np.zeros(width, np.int8)])
    cell_dx = np.concatenate([np.tile(ki, asize), np.zeros(width, np.int8)])
    dy = np.broadcast_to(cell_dy, select.shape)[select].reshape(px.size, width)
    dx = np.broadcast_to(cell_dx, select.shape)[select].reshape(px.size, width)
    mask = np.concatenate([in_ann, np.zeros((px.size, width), bool)], axis=1)[select]
    out = (dy, dx, mask.reshape(px.size, width), count)
    for a in out:
        a.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def _pixel_flat_offsets(r_in: float, r_out: float, m: int, n_cols: int, half: int) -> np.ndarray:
    """Flat-index offsets in an array of ``n_cols`` columns, for every phase of
    :func:`_phase_annulus`: the ``2 half + 1`` square aperture stamp (row-major, the same for
    every phase), then the phase's annulus cells. ``(P, S*S + W)`` intp, read-only: one
    gather of whole rows and one add place every star's stamp and annulus."""
    dy, dx, _, _ = _phase_annulus(r_in, r_out, m)
    k = np.arange(-half, half + 1, dtype=np.intp)
    stamp = (k[:, None] * n_cols + k[None, :]).reshape(-1)
    out = np.empty((dy.shape[0], stamp.size + dy.shape[1]), dtype=np.intp)
    out[:, : stamp.size] = stamp
    np.add(dy.astype(np.intp) * n_cols, dx, out=out[:, stamp.size :])
    out.setflags(write=False)
    return out


def _grid_aperture_weights(
    xa: np.ndarray,
    ya: np.ndarray,
    radii: tuple[float, ...],
    annulus: tuple[float, float],
    shp: tuple[int, int],
    box: _Box,
    method: str,
    subpixels: int,
    m: int,
) -> ApertureWeights:
    """:func:`build_aperture_weights` of positions rounded to a ``1/m`` grid, by table look-up.

    ``radii`` are the main radius then the extra ones."""
    r0, r1, c0, c1 = box
    # Integer grid coordinates: the nearest pixel and the phase are exact integer arithmetic.
    qx = np.round(xa * m)
    qy = np.round(ya * m)
    xq, yq = qx / m, qy / m
    outside = ~((xq >= c0 - 0.5) & (xq < c1 - 0.5) & (yq >= r0 - 0.5) & (yq < r1 - 0.5))
    qx = np.where(outside, c0 * m, qx).astype(np.int64)  # parked on a valid pixel, phase 0
    qy = np.where(outside, r0 * m, qy).astype(np.int64)
    ic = (2 * qx + m) // (2 * m)  # floor(x + 0.5)
    ir = (2 * qy + m) // (2 * m)
    k0 = -(m // 2)
    row = (qy - ir * m - k0) * m + (qx - ic * m - k0)
    ic = ic.astype(np.intp)
    ir = ir.astype(np.intp)
    centre = ir * shp[1] + ic
    tab_dy, tab_dx, tab_mask, tab_count = _phase_annulus(annulus[0], annulus[1], m)
    # Only stars whose annulus stamp (which contains the aperture stamp) reaches past the
    # science area need the in-area tests; for all others every cell is inside.
    ahalf = int(math.ceil(annulus[1]))
    near = (ic - ahalf < c0) | (ic + ahalf >= c1) | (ir - ahalf < r0) | (ir + ahalf >= r1) | outside
    near_idx = np.flatnonzero(near)

    n = xa.size
    half = int(math.ceil(max(radii)))  # one stamp holds every aperture
    size2 = (2 * half + 1) ** 2
    # Pixel indices: each star's stamp then its annulus cells, as whole rows of the per-phase
    # offsets (the rest of the annulus table is padding) plus the star's centre.
    width = int(tab_count[row].max()) if n else 0
    offsets = _pixel_flat_offsets(annulus[0], annulus[1], m, shp[1], half)
    if size2 + width < offsets.shape[1]:
        offsets, tab_mask = offsets[:, : size2 + width], tab_mask[:, :width]
    pix_index = np.take(offsets, row, axis=0)  # whole rows: faster than fancy indexing
    pix_index += centre[:, None]
    ap_index, ann_index = pix_index[:, :size2], pix_index[:, size2:]
    wts = np.empty((len(radii), n, size2), dtype=np.float32)
    npix = np.empty((len(radii), n), dtype=np.float32)
    for j, r in enumerate(radii):
        tab, tab_npix = _phase_weights(r, method, subpixels, m, half)
        np.take(tab, row, axis=0, out=wts[j])
        np.take(tab_npix, row, out=npix[j])
    edge = np.zeros((len(radii), n), dtype=bool)
    if near_idx.size:
        idx_near, in_near = _stamp_indices(ic[near_idx], ir[near_idx], half, shp, box)
        ap_index[near_idx] = idx_near
        keep = in_near & ~outside[near_idx, None]
        for j in range(len(radii)):
            w_near = wts[j, near_idx]
            edge[j, near_idx] = np.any((w_near > 0) & ~in_near, axis=1) & ~outside[near_idx]
            w_near = np.where(keep, w_near, np.float32(0.0))
            wts[j, near_idx] = w_near
            npix[j, near_idx] = w_near.sum(axis=1, dtype=np.float64)
    ann_mask = np.take(tab_mask, row, axis=0)
    if near_idx.size:
        rows = ir[near_idx, None] + tab_dy[:, :width][row[near_idx]]
        cols = ic[near_idx, None] + tab_dx[:, :width][row[near_idx]]
        in_sci = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
        ann_index[near_idx] = np.clip(rows, 0, shp[0] - 1) * shp[1] + np.clip(cols, 0, shp[1] - 1)
        ann_mask[near_idx] &= in_sci & ~outside[near_idx, None]

    return ApertureWeights(
        shape=shp,
        science_box=box,
        x=xq,
        y=yq,
        radius=radii[0],
        extra_radii=radii[1:],
        annulus=annulus,
        method=method,
        pix_index=pix_index,
        radii_weight=wts,
        radii_npix=npix,
        ann_mask=ann_mask,
        radii_edge=edge,
        outside=outside,
    )


def build_aperture_weights(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    radius: float = DEFAULT_RADIUS,
    annulus: tuple[float, float] = DEFAULT_ANNULUS,
    shape: tuple[int, int] = FFI_SHAPE,
    *,
    extra_radii: Sequence[float] = (),
    method: Literal["exact", "subpixel"] = "exact",
    subpixels: int = 5,
    science_area: ScienceArea | None = None,
    grid: float | None = None,
) -> ApertureWeights:
    """Precompute circular-aperture weights and annulus pixels for a list of stars.

    Each star gets a square stamp of ``2 * ceil(max(radius, *extra_radii)) + 1`` pixels
    centred on its nearest pixel, shared by all its apertures (the main one of ``radius`` and
    one per ``extra_radii``), each with its own weights over the stamp. The weight of a pixel
    is the exact area of the pixel inside the circle (as ``photutils`` ``method='exact'``), or
    with ``method='subpixel'`` the fraction of ``subpixels**2`` sub-pixel centres inside it.
    Pixels outside the science area get weight 0, and a star whose main aperture loses pixels
    that way is flagged ``edge`` (``extra_edge`` for each extra aperture). Annulus pixels are
    those whose centre lies at ``inner <= d < outer`` from the star, inside the science area;
    every aperture of a star shares this one annulus. A star whose centre falls outside the
    science area (or the array) is flagged ``outside`` and gets no pixels.

    With ``grid``, every position is first rounded to the nearest multiple of ``grid`` pixels,
    and each star's aperture weights and annulus cells are looked up by its sub-pixel phase in
    tables computed once per ``(radius, method, grid, stamp)`` and ``(annulus, grid, stamp)``
    for every phase on that grid (and kept: about 16 MB for the pixel indices and 2 MB per
    radius, built in 40-70 ms, for ``grid=0.01``). The result is the same as without
    ``grid`` for the rounded positions, which the weights' ``x, y`` hold (but for the rare
    pixel whose centre lies exactly on an annulus radius, which float rounding puts on either
    side), and about five times faster for many stars: the way to re-place thousands of
    apertures on every frame that moves.

    Parameters
    ----------
    x, y : array_like
        Full-array column and row (0-based, pixel centres at integers), 1-D, finite.
    radius : float, optional
        Main aperture radius in pixels (> 0).
    annulus : tuple of float, optional
        ``(inner, outer)`` radii of the background annulus, ``radius < inner < outer``.
    shape : tuple of int, optional
        Shape of the images to be measured; the FFI shape unless ``science_area`` is given.
    extra_radii : sequence of float, optional
        Further aperture radii in pixels, measured with the same annulus background (each
        finite, > 0, below the annulus inner radius and different from ``radius`` and from
        each other). Their order is kept: row ``j`` of ``extra_weight`` is ``extra_radii[j]``.
    method : {'exact', 'subpixel'}, optional
        Pixel-weight computation.
    subpixels : int, optional
        Sub-pixel sampling per axis for ``method='subpixel'``.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required for non-FFI shapes.
    grid : float, optional
        Position grid in pixels; ``1 / grid`` must be an integer from 2 to 1000 (e.g. 0.01).

    Returns
    -------
    ApertureWeights

    Raises
    ------
    ValueError
        On mismatched or non-finite positions, bad radii or extra radii, method, shape or
        grid.

    Examples
    --------
    >>> import numpy as np
    >>> from tess_ffi.services.photometer.photometry import build_aperture_weights
    >>> w = build_aperture_weights([1000.3, 44.2, 10.0], [500.7, 800.0, 800.0], 2.0, (4.0, 7.0))
    >>> w
    ApertureWeights(n_stars=3, radius=2.0, annulus=(4.0, 7.0), method='exact', stamp_size=5)
    >>> round(float(w.npix[0]), 4), round(np.pi * 2.0**2, 4)     # the full circle
    (12.5664, 12.5664)
    >>> w.edge.tolist(), w.outside.tolist()      # x = 44.2 is cut by the first science column
    ([False, True, False], [False, False, True])

    On a 0.01-px grid the positions are rounded, and the weights are those of the rounded
    positions:

    >>> g = build_aperture_weights([1000.3037], [500.6951], grid=0.01)
    >>> g.x.tolist(), g.y.tolist()
    ([1000.3], [500.7])
    >>> e = build_aperture_weights([1000.3], [500.7])
    >>> bool(np.allclose(g.ap_weight, e.ap_weight)), bool(np.array_equal(g.ann_index, e.ann_index))
    (True, True)

    Three apertures on one 7 x 7 stamp; the star at x = 46.2 has its 3-px aperture cut by
    the first science column (44) but not its 1.5- and 2-px ones:

    >>> m = build_aperture_weights([1000.3, 46.2], [500.7, 800.0], extra_radii=(1.5, 3.0))
    >>> m.radii, m.stamp_size, m.extra_weight.shape
    ((2.0, 1.5, 3.0), 7, (2, 2, 49))
    >>> (m.radii_npix[:, 0] / np.pi).round(4).tolist()              # r**2 for each radius
    [4.0, 2.25, 9.0]
    >>> m.edge.tolist(), m.extra_edge.tolist()
    ([False, False], [[False, False], [False, True]])
    """
    xa, ya = _check_positions(x, y)
    r, (r_in, r_out) = _check_radii(radius, annulus)
    extra = _check_extra_radii(extra_radii, r, (r_in, r_out))
    radii = (r, *extra)
    try:
        shp = (int(shape[0]), int(shape[1]))
        if len(shape) != 2 or min(shp) < 1:
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"shape must be a pair of positive integers, got {shape!r}") from None
    box = _resolve_science_area(shp, science_area)
    if method not in ("exact", "subpixel"):
        raise ValueError(f"method must be 'exact' or 'subpixel', got {method!r}")
    if not isinstance(subpixels, (int, np.integer)) or subpixels < 1:
        raise ValueError(f"subpixels must be a positive integer, got {subpixels!r}")
    if grid is not None:
        steps = _grid_steps(grid)
        return _grid_aperture_weights(
            xa, ya, radii, (r_in, r_out), shp, box, method, int(subpixels), steps
        )

    r0, r1, c0, c1 = box
    # Nearest pixel; stars with their centre outside the science area are parked on a valid
    # pixel (their weights are zeroed below), which also keeps huge coordinates harmless.
    outside = ~((xa >= c0 - 0.5) & (xa < c1 - 0.5) & (ya >= r0 - 0.5) & (ya < r1 - 0.5))
    xs = np.where(outside, float(c0), xa)
    ys = np.where(outside, float(r0), ya)
    ic = np.floor(xs + 0.5).astype(np.intp)
    ir = np.floor(ys + 0.5).astype(np.intp)

    # Aperture stamps: one per star, holding its largest aperture; weights per radius.
    half = int(math.ceil(max(radii)))
    size = 2 * half + 1
    dx0 = (ic - half - 0.5) - xs
    dy0 = (ir - half - 0.5) - ys
    ap_index, ap_in = _stamp_indices(ic, ir, half, shp, box)
    keep = ap_in & ~outside[:, None]
    wts = np.empty((len(radii), xa.size, size * size), dtype=np.float32)
    edge = np.empty((len(radii), xa.size), dtype=bool)
    for j, rj in enumerate(radii):
        if method == "exact":
            wj = _exact_weights(dx0, dy0, size, rj)
        else:
            wj = _subpixel_weights(dx0, dy0, size, rj, int(subpixels))
        wj = wj.reshape(xa.size, size * size)
        wj[wj < _WEIGHT_EPS] = 0.0
        edge[j] = np.any((wj > 0) & ~ap_in, axis=1) & ~outside
        wts[j] = np.where(keep, wj, 0.0)
    # Annulus: pixel centres with inner <= d < outer, compacted to a fixed width: each row
    # holds its star's annulus pixels in stamp (row-major) order, then padding (mask False,
    # pointing at the star's own pixel). Compaction is one boolean selection in which every
    # row has exactly ``width`` selected entries: its annulus cells, then enough padding.
    ahalf = int(math.ceil(r_out))
    asize = 2 * ahalf + 1
    n = xa.size
    k = np.arange(-ahalf, ahalf + 1, dtype=np.float64)
    ddx = (ic - xs)[:, None] + k  # (n, A): pixel-centre offsets from the star
    ddy = (ir - ys)[:, None] + k
    d2 = ddy[:, :, None] ** 2 + ddx[:, None, :] ** 2
    in_ann = ((d2 >= r_in * r_in) & (d2 < r_out * r_out)).reshape(n, asize * asize)
    del d2
    counts = np.count_nonzero(in_ann, axis=1)
    width = int(counts.max()) if n else 0
    select = np.concatenate([in_ann, np.arange(width)[None, :] >= counts[:, None]], axis=1)
    centre = (np.clip(ir, 0, shp[0] - 1) * shp[1] + np.clip(ic, 0, shp[1] - 1)).astype(np.intp)
    ki = np.arange(-ahalf, ahalf + 1, dtype=np.intp)
    cell_offset = (ki[:, None] * shp[1] + ki[None, :]).reshape(-1)
    full_index = np.empty((n, asize * asize + width), dtype=np.intp)
    np.add(centre[:, None], cell_offset[None, :], out=full_index[:, : asize * asize])
    full_index[:, asize * asize :] = centre[:, None]
    full_mask = np.zeros((n, asize * asize + width), dtype=bool)
    full_mask[:, : asize * asize] = in_ann
    # Stamps not wholly inside the science area (and stars outside it): clipped indices and
    # the in-science-area test, as for the aperture.
    near = (ic - ahalf < c0) | (ic + ahalf >= c1) | (ir - ahalf < r0) | (ir + ahalf >= r1) | outside
    if near.any():
        idx_near, sci_near = _stamp_indices(ic[near], ir[near], ahalf, shp, box)
        full_index[near, : asize * asize] = idx_near
        full_mask[near, : asize * asize] &= sci_near & ~outside[near][:, None]
    ann_index = full_index[select].reshape(n, width)
    ann_mask = full_mask[select].reshape(n, width)
    del full_index, full_mask, select

    return ApertureWeights(
        shape=shp,
        science_box=box,
        x=xa.copy(),
        y=ya.copy(),
        radius=r,
        extra_radii=extra,
        annulus=(r_in, r_out),
        method=method,
        pix_index=np.concatenate([ap_index, ann_index], axis=1),
        radii_weight=wts,
        radii_npix=wts.sum(axis=2, dtype=np.float64).astype(np.float32),
        ann_mask=np.ascontiguousarray(ann_mask),
        radii_edge=edge,
        outside=outside,
    )


# --------------------------------------------------------------------------------------------
# forced photometry
# --------------------------------------------------------------------------------------------


def _radius_label(radius: float) -> str:
    """Column suffix of an aperture radius: ``r1p5`` for 1.5 px, ``r3`` for 3.0 px."""
    return "r" + f"{radius:g}".replace(".", "p")


@dataclass(eq=False)
class PhotometryResult:
    """Per-star result of :func:`forced_aperture_photometry` on one frame.

    Attributes
    ----------
    flux : numpy.ndarray
        float32 background-subtracted flux in the main aperture, e-/s (NaN when not
        measurable).
    flux_err : numpy.ndarray
        float32 1-sigma uncertainty of ``flux``, e-/s.
    bkg : numpy.ndarray
        float32 local background per pixel at the star, e-/s.
    x, y : numpy.ndarray
        float32 positions measured at (full-array column, row).
    quality : numpy.ndarray
        int32 bitmask of :class:`tess_ffi.shared.quality.QualityFlags` (``EDGE``,
        ``SATURATED``, ``NEGATIVE_FLUX``, ``OUTSIDE``; see
        :func:`forced_aperture_photometry`).
    bkg_err : numpy.ndarray or None
        float32 uncertainty of ``bkg`` (standard error of the clipped annulus median).
    npix : numpy.ndarray or None
        float32 effective main-aperture area in pixels (sum of the weights actually used).
    extra_radii : tuple of float
        Radii (px) of the extra apertures, in the order of the rows of the ``extra_*``
        arrays; empty when only the main aperture was measured.
    extra_flux, extra_flux_err : numpy.ndarray or None
        ``(len(extra_radii), n_stars)`` float32 flux and 1-sigma uncertainty in each extra
        aperture, e-/s, with the same background as ``flux``. Like ``flux``, an aperture cut
        by the science-area edge covers only its pixels inside (the star is flagged
        ``EDGE``), and a star without background, outside the science area or with a
        non-finite pixel in that aperture gets NaN.
    extra_npix : numpy.ndarray or None
        ``(len(extra_radii), n_stars)`` float32 effective areas of the extra apertures, px.
    """

    flux: np.ndarray
    flux_err: np.ndarray
    bkg: np.ndarray
    x: np.ndarray
    y: np.ndarray
    quality: np.ndarray
    bkg_err: np.ndarray | None = None
    npix: np.ndarray | None = None
    extra_radii: tuple[float, ...] = ()
    extra_flux: np.ndarray | None = None
    extra_flux_err: np.ndarray | None = None
    extra_npix: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.flux.size)

    def to_frame(self) -> pd.DataFrame:
        """The result as a :class:`pandas.DataFrame`, one row per star; the extra apertures'
        columns are ``flux_r1p5``, ``flux_err_r1p5`` (radius 1.5 px), ``flux_r3``, ..."""
        cols = {
            k: getattr(self, k)
            for k in ("x", "y", "flux", "flux_err", "bkg", "bkg_err", "npix", "quality")
            if getattr(self, k) is not None
        }
        for j, r in enumerate(self.extra_radii):
            label = _radius_label(r)
            for name, values in (("flux", self.extra_flux), ("flux_err", self.extra_flux_err)):
                if values is not None:
                    cols[f"{name}_{label}"] = values[j]
        return pd.DataFrame(cols)


def _weighted_sums(wts: np.ndarray, values: np.ndarray, *, squared: bool = False) -> np.ndarray:
    """``(n_radii, n)`` sums over each star's stamp of ``wts`` ``(n_radii, n, S*S)`` (or of
    their squares) times ``values`` ``(n, S*S)``, float32.

    One radius at a time, each numpy's fast two-operand row-wise product sum; the squared
    weights of one radius at a time go through one reused buffer.
    """
    out = np.empty(wts.shape[:2], dtype=np.float32)
    buf = np.empty(wts.shape[1:], dtype=np.float32) if squared else None
    for k in range(wts.shape[0]):
        w = wts[k]
        if buf is not None:
            w = np.multiply(w, w, out=buf)
        np.einsum("ij,ij->i", w, values, out=out[k])
    return out


def forced_aperture_photometry(
    image: np.ndarray,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    uncertainty: np.ndarray | None = None,
    radius: float | None = None,
    annulus: tuple[float, float] | None = None,
    extra_radii: Sequence[float] | None = None,
    weights: ApertureWeights | None = None,
    saturation_level: float = 1.5e5,
    sigma_clip: float = 3.0,
    maxiters: int = 5,
    exposure_time: float = _FALLBACK_EXPOSURE_TIME,
    read_noise: float = _FALLBACK_READ_NOISE,
    science_area: ScienceArea | None = None,
) -> PhotometryResult:
    """Forced circular-aperture photometry with a local annulus background on one frame.

    ``flux = sum(w * pix) - npix * bkg`` where ``w`` are the aperture weights, ``npix =
    sum(w)`` and ``bkg`` is the median of the annulus pixels after iterative median-centred
    ``sigma_clip``-sigma clipping. The uncertainty is
    ``flux_err = sqrt(sum(w**2 * sigma**2) + npix**2 * bkg_err**2)`` with ``sigma`` from the
    ``uncertainty`` image (HDU 2 of a calibrated FFI) and
    ``bkg_err = sqrt(pi / 2) * std / sqrt(n)`` over the ``n`` clipped annulus pixels (the
    standard error of a median, which is what ``bkg`` is). Without ``uncertainty`` a
    Poisson + read-noise model ``sigma**2 = max(pix, 0) / exposure_time +
    (read_noise / exposure_time)**2`` is used as a fallback.

    With ``extra_radii`` every star is also measured in apertures of those radii, with the
    same formulae and the *same* background ``bkg`` and ``bkg_err`` (the annulus is gathered,
    sorted and clipped once per star, the expensive part; each further radius costs one
    weighted sum over the star's stamp, which all radii share). Small apertures suit faint,
    background-limited stars; larger ones suit bright stars, whose flux then depends less on
    where the star sits within a pixel.

    Quality bits (:class:`~tess_ffi.shared.quality.QualityFlags`): ``OUTSIDE`` for a centre
    outside the science area (every flux, error and the background NaN), ``EDGE`` when the
    star's largest aperture is cut by the science-area edge (each flux then covers only the
    pixels of its aperture inside the science area; smaller apertures may be whole, and the
    main one keeps its meaning: without extra radii, ``EDGE`` is exactly "the aperture is
    cut"), ``SATURATED`` when a pixel of the main aperture is ``>= saturation_level``,
    ``NEGATIVE_FLUX`` when ``flux < 0`` (the main aperture). A star with fewer than 5 usable
    annulus pixels gets NaN in every aperture; a non-finite pixel gives NaN in the apertures
    that hold it and leaves the others alone.

    Parameters
    ----------
    image : numpy.ndarray
        Calibrated FFI, shape ``(2078, 2136)``, e-/s. Not copied when C-contiguous.
    x, y : array_like
        Full-array column and row of each star (1-D, finite).
    uncertainty : numpy.ndarray, optional
        1-sigma uncertainty image of the same shape, e-/s.
    radius : float, optional
        Main aperture radius in pixels; default 2.0 or that of ``weights``.
    annulus : tuple of float, optional
        ``(inner, outer)`` annulus radii; default (4.0, 7.0) or that of ``weights``.
    extra_radii : sequence of float, optional
        Further aperture radii in pixels (see :func:`build_aperture_weights`); default none
        or those of ``weights``.
    weights : ApertureWeights, optional
        Precomputed weights for exactly these positions (the fast path for many frames).
        Built on the fly when omitted.
    saturation_level : float, optional
        Pixel value (e-/s) at or above which a star is flagged ``SATURATED``.
    sigma_clip : float, optional
        Clipping threshold for the annulus, in standard deviations.
    maxiters : int, optional
        Maximum clipping iterations.
    exposure_time, read_noise : float, optional
        Effective exposure (s) and total read noise (e-) for the fallback noise model; the
        defaults describe a 1800-s FFI.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required for non-FFI shapes when ``weights``
        is not given.

    Returns
    -------
    PhotometryResult

    Raises
    ------
    ValueError
        On a wrong image or uncertainty shape/ndim/dtype, mismatched or non-finite
        positions, bad radii or extra radii, or ``weights`` built for other positions, radii
        or shapes.

    Examples
    --------
    One Gaussian star (FWHM 1.8 px, 10000 e-/s) on a flat 150 e-/s sky; a 5-px aperture
    holds all its light:

    >>> import numpy as np
    >>> from tess_ffi.services.photometer.photometry import FFI_SHAPE, forced_aperture_photometry
    >>> rows, cols = np.indices(FFI_SHAPE, dtype=np.float32)
    >>> s = 1.8 / 2.3548
    >>> star = np.exp(-((cols - 1000.3)**2 + (rows - 700.6)**2) / (2 * s * s)) / (2 * np.pi * s * s)
    >>> image = (150.0 + 10000.0 * star).astype(np.float32)
    >>> res = forced_aperture_photometry(image, [1000.3], [700.6], radius=5.0, annulus=(8.0, 12.0))
    >>> bool(abs(res.flux[0] / 10000.0 - 1) < 0.01), float(res.bkg[0])
    (True, 150.0)

    With the uncertainty image, ``flux_err`` follows from it; bad positions are flagged:

    >>> from tess_ffi.shared.quality import QualityFlags
    >>> sigma = np.sqrt(image / 1425.6).astype(np.float32)
    >>> res = forced_aperture_photometry(image, [1000.3, 10.0, 44.4], [700.6, 100.0, 300.0],
    ...                                  uncertainty=sigma)
    >>> [QualityFlags(int(q)).name for q in res.quality]
    [None, 'OUTSIDE', 'EDGE']
    >>> bool(np.isnan(res.flux[1])), round(float(res.flux_err[0]), 2)
    (True, 2.76)

    Three radii at once: the 1.5-, 2- and 3-px apertures hold 81 %, 95 % and 99.9 % of this
    star's light (the 2-px one stays in ``flux``):

    >>> res = forced_aperture_photometry(image, [1000.3], [700.6], extra_radii=(1.5, 3.0))
    >>> res.extra_radii, res.extra_flux.shape
    ((1.5, 3.0), (2, 1))
    >>> fluxes = np.r_[res.extra_flux[0], res.flux, res.extra_flux[1]].astype(float)
    >>> (fluxes / 10000.0).round(3).tolist()
    [0.81, 0.95, 0.999]
    >>> list(res.to_frame().columns[-4:])
    ['flux_r1p5', 'flux_err_r1p5', 'flux_r3', 'flux_err_r3']
    """
    image = _check_image(image)
    xa, ya = _check_positions(x, y)
    if weights is None:
        r, radii = _check_radii(
            DEFAULT_RADIUS if radius is None else radius,
            DEFAULT_ANNULUS if annulus is None else annulus,
        )
        shape = (int(image.shape[0]), int(image.shape[1]))
        weights = build_aperture_weights(
            xa, ya, r, radii, shape, science_area=science_area,
            extra_radii=() if extra_radii is None else extra_radii,
        )
    else:
        if not isinstance(weights, ApertureWeights):
            raise ValueError(f"weights must be an ApertureWeights, got {type(weights).__name__}")
        if image.shape != weights.shape:
            raise ValueError(
                f"image shape {image.shape} differs from the weights' shape {weights.shape}"
            )
        if science_area is not None:
            box = _resolve_science_area(image.shape, science_area)
            if box != weights.science_box:
                raise ValueError(
                    f"science_area {box} differs from the weights' science area "
                    f"{weights.science_box}"
                )
        if xa.size != weights.n_stars:
            raise ValueError(
                f"got {xa.size} positions but the weights were built for {weights.n_stars} stars"
            )
        if xa.size and (
            np.max(np.abs(xa - weights.x)) > 1e-6 or np.max(np.abs(ya - weights.y)) > 1e-6
        ):
            raise ValueError("x, y differ from the positions the weights were built for")
        if radius is not None and float(radius) != weights.radius:
            raise ValueError(f"radius {radius} differs from the weights' radius {weights.radius}")
        if annulus is not None and tuple(float(a) for a in annulus) != weights.annulus:
            raise ValueError(
                f"annulus {tuple(annulus)} differs from the weights' annulus {weights.annulus}"
            )
        if extra_radii is not None:
            extra = _check_extra_radii(extra_radii, weights.radius, weights.annulus)
            if extra != weights.extra_radii:
                raise ValueError(
                    f"extra_radii {extra} differ from the weights' extra_radii "
                    f"{weights.extra_radii}"
                )
    if uncertainty is not None:
        uncertainty = _check_image(uncertainty, "uncertainty")
        if uncertainty.shape != image.shape:
            raise ValueError(
                f"uncertainty shape {uncertainty.shape} differs from image shape {image.shape}"
            )
    sat = float(saturation_level)
    if math.isnan(sat) or sat <= 0:
        raise ValueError(
            f"saturation_level must be > 0 (inf disables it), got {saturation_level!r}"
        )
    if not (math.isfinite(sigma_clip) and sigma_clip > 0):
        raise ValueError(f"sigma_clip must be finite and > 0, got {sigma_clip!r}")
    if not isinstance(maxiters, (int, np.integer)) or maxiters < 1:
        raise ValueError(f"maxiters must be a positive integer, got {maxiters!r}")
    if uncertainty is None and not (exposure_time > 0 and read_noise >= 0):
        raise ValueError("exposure_time must be > 0 and read_noise >= 0")

    flat = _flat_view(image)
    wts = weights.radii_weight  # (n_radii, n, S*S), the main radius first
    # One gather of each star's aperture stamp (n, S*S), shared by every radius, and of its
    # annulus: star by star, both lie on the same image rows, mostly in the same cache lines,
    # so the stamp comes nearly free with the annulus. The indices are valid by construction
    # (clipped when built), so numpy's cheapest index mode is used; "wrap" gathers measurably
    # faster than "clip" here. Every pixel of the stamp enters the weighted sums (weight 0
    # outside an aperture); the few stars with a non-finite pixel in their stamp are redone
    # below, where only pixels inside an aperture count.
    pix = np.take(flat, weights.pix_index, mode="wrap").astype(np.float32, copy=False)
    ap, ann = pix[:, : wts.shape[2]], pix[:, wts.shape[2] :]
    with np.errstate(invalid="ignore"):  # 0 * inf
        sums = _weighted_sums(wts, ap)
    hot = ap >= sat
    saturated = np.zeros(xa.size, dtype=bool)
    hot_rows = np.flatnonzero(hot.any(axis=1))
    if hot_rows.size:
        saturated[hot_rows] = np.any(hot[hot_rows] & (wts[0, hot_rows] > 0), axis=1)
    del hot

    # Annulus: pixels outside the annulus (padding, off the science area) or not finite
    # become +inf, which sorts to the end of each row; sort each row once and clip.
    np.copyto(ann, np.float32(np.inf), where=~weights.ann_mask)
    ann.sort(axis=1)  # NaN sorts after +inf, so it is past the finite run as well
    if ann.shape[1] and np.isneginf(ann[:, 0]).any():  # -inf pixels (sorted first): +inf too
        bad = np.flatnonzero(np.isneginf(ann[:, 0]))
        rows = ann[bad]
        rows[np.isneginf(rows)] = np.inf
        rows.sort(axis=1)
        ann[bad] = rows
    med, _mean, std, n_used = _clip_sorted_rows(ann, sigma_clip, int(maxiters))
    del ann, pix
    enough = n_used >= _MIN_ANNULUS_PIXELS
    bkg = np.where(enough, med, np.nan).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        bkg_err = np.where(enough, _MEDIAN_ERR_FACTOR * std / np.sqrt(n_used), np.nan)
    bkg_err = bkg_err.astype(np.float32)

    if uncertainty is not None:
        sig = np.take(_flat_view(uncertainty), weights.ap_index, mode="wrap")
        sig = sig.astype(np.float32, copy=False)  # a new array either way: square in place
        var_pix = np.square(sig, out=sig)
    else:
        t = np.float32(exposure_time)
        var_pix = np.maximum(ap, np.float32(0.0)) / t
        var_pix += np.float32((read_noise / exposure_time) ** 2)
    with np.errstate(invalid="ignore"):
        var_ap = _weighted_sums(wts, var_pix, squared=True)
    # A non-finite pixel (or uncertainty) in a star's stamp spoils all its sums (0 * NaN is
    # NaN): redo those stars (rare) with only the pixels inside each aperture, so that a bad
    # pixel outside an aperture does not affect it.
    redo = np.flatnonzero(~(np.isfinite(sums).all(axis=0) & np.isfinite(var_ap).all(axis=0)))
    if redo.size:
        w_r = wts[:, redo]
        inside = w_r > 0
        zero = np.float32(0.0)
        sums[:, redo] = np.einsum("kij,kij->ki", w_r, np.where(inside, ap[redo], zero))
        var_ap[:, redo] = np.einsum(
            "kij,kij->ki", w_r * w_r, np.where(inside, var_pix[redo], zero)
        )

    npix = weights.radii_npix
    out = weights.outside
    flux_all = sums - npix * bkg
    flux_err_all = np.sqrt(var_ap + (npix * bkg_err) ** 2)
    flux_all = np.where(out, np.nan, flux_all).astype(np.float32)
    flux_err_all = np.where(out, np.nan, flux_err_all).astype(np.float32)
    flux, flux_err = flux_all[0], flux_err_all[0]
    bkg = np.where(out, np.nan, bkg).astype(np.float32)
    bkg_err = np.where(out, np.nan, bkg_err).astype(np.float32)

    quality = np.zeros(xa.size, dtype=np.int32)
    # EDGE: the largest aperture (which holds the others) is cut.
    edge = weights.radii_edge[int(np.argmax(weights.radii))]
    quality |= np.where(edge, np.int32(QualityFlags.EDGE), np.int32(0))
    quality |= np.where(saturated, np.int32(QualityFlags.SATURATED), np.int32(0))
    quality |= np.where(flux < 0, np.int32(QualityFlags.NEGATIVE_FLUX), np.int32(0))
    quality |= np.where(out, np.int32(QualityFlags.OUTSIDE), np.int32(0))
    return PhotometryResult(
        flux=flux,
        flux_err=flux_err,
        bkg=bkg,
        x=xa.astype(np.float32),
        y=ya.astype(np.float32),
        quality=quality,
        bkg_err=bkg_err,
        npix=weights.npix.copy(),
        extra_radii=weights.extra_radii,
        extra_flux=flux_all[1:],
        extra_flux_err=flux_err_all[1:],
        extra_npix=weights.extra_npix.copy(),
    )


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------


def _gaussian_profile(
    u: np.ndarray, s: float, c: float, norm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-integrated 1-D Gaussian (sigma ``s``; ``c = sqrt(2) s``, ``norm = sqrt(2 pi) s``)
    at pixel-centre offsets ``u`` from its centre, and its derivative w.r.t. the centre."""
    p = 0.5 * (erf((u + 0.5) / c) - erf((u - 0.5) / c))
    dp = (np.exp(-0.5 * ((u + 0.5) / s) ** 2) - np.exp(-0.5 * ((u - 0.5) / s) ** 2)) / norm
    return p, dp


def _fit_gaussian_stamps(
    d: np.ndarray,
    wgt: np.ndarray | None,
    ic: np.ndarray,
    ir: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    half: int,
    fwhm: float,
    iters: int,
    *,
    errors: bool = False,
    scaled_ridge: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Batched Gauss-Newton fit of a pixel-integrated circular Gaussian of fixed ``fwhm`` with
    free amplitude, centre and constant offset to ``n`` square stamps at once.

    ``d`` and ``wgt`` are ``(n, (2 half + 1)**2)`` float64 pixel values and 0/1 weights of the
    stamps centred on pixel ``(ir, ic)``, row-major; ``wgt=None`` means every pixel counts,
    and then the normal equations are formed from 1-D sums (the model is separable), several
    times faster. ``x, y`` are the starting centres (full-array column, row). Centre steps are
    clipped to 0.5 px per iteration. Each normal matrix gets a small ridge: 1e-9 of its trace,
    or with ``scaled_ridge`` 1e-9 of each diagonal element (which converges in fewer steps
    when the amplitude is large). Returns the fitted ``x, y``, the amplitude (total flux)
    and, with ``errors``, the 1-sigma errors of the centre ``(n, 2)`` from the final normal
    matrix scaled by each stamp's reduced chi-square (NaN where undetermined). Raises
    ``numpy.linalg.LinAlgError`` if a system is singular.
    """
    n = x.size
    b = 2 * half + 1
    s = fwhm * _FWHM_TO_SIGMA
    k = np.arange(-half, half + 1)
    kk = k.astype(np.float64)
    c = math.sqrt(2.0) * s
    norm = math.sqrt(2.0 * math.pi) * s
    xs, ys = x.astype(np.float64).copy(), y.astype(np.float64).copy()
    off = np.median(d, axis=1)
    amp = np.maximum(d.max(axis=1) - off, 1e-12) * 2.0 * math.pi * s * s
    eye = np.eye(4)

    def system(
        xs: np.ndarray, ys: np.ndarray, amp: np.ndarray, off: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normal matrix (n, 4, 4), gradient (n, 4) and chi-square (n,) at these parameters;
        parameters (amplitude, x, y, offset)."""
        px, dpx = _gaussian_profile(kk[None, :] + (ic - xs)[:, None], s, c, norm)
        py, dpy = _gaussian_profile(kk[None, :] + (ir - ys)[:, None], s, c, norm)
        if wgt is None:
            # model = py (x) px, d/dx = -amp py (x) dpx, d/dy = -amp dpy (x) px: every sum over
            # the stamp is a product of two 1-D sums, and the gradient needs R px and R dpx.
            res = d.reshape(n, b, b) - amp[:, None, None] * py[:, :, None] * px[:, None, :]
            res -= off[:, None, None]
            r_px = np.einsum("nrc,nc->nr", res, px)
            r_dpx = np.einsum("nrc,nc->nr", res, dpx)
            yy, yd, dd_y = (py * py).sum(1), (py * dpy).sum(1), (dpy * dpy).sum(1)
            xx, xd, dd_x = (px * px).sum(1), (px * dpx).sum(1), (dpx * dpx).sum(1)
            sy, sdy, sx, sdx = py.sum(1), dpy.sum(1), px.sum(1), dpx.sum(1)
            a_mat = np.empty((n, 4, 4))
            a_mat[:, 0, 0] = yy * xx
            a_mat[:, 0, 1] = a_mat[:, 1, 0] = -amp * yy * xd
            a_mat[:, 0, 2] = a_mat[:, 2, 0] = -amp * yd * xx
            a_mat[:, 0, 3] = a_mat[:, 3, 0] = sy * sx
            a_mat[:, 1, 1] = amp * amp * yy * dd_x
            a_mat[:, 1, 2] = a_mat[:, 2, 1] = amp * amp * yd * xd
            a_mat[:, 1, 3] = a_mat[:, 3, 1] = -amp * sy * sdx
            a_mat[:, 2, 2] = amp * amp * dd_y * xx
            a_mat[:, 2, 3] = a_mat[:, 3, 2] = -amp * sdy * sx
            a_mat[:, 3, 3] = float(b * b)
            g = np.stack(
                [
                    (py * r_px).sum(1),
                    -amp * (py * r_dpx).sum(1),
                    -amp * (dpy * r_px).sum(1),
                    res.sum(axis=(1, 2)),
                ],
                axis=1,
            )
            return a_mat, g, np.einsum("nrc,nrc->n", res, res)
        model = (py[:, :, None] * px[:, None, :]).reshape(n, -1)
        jx = -(amp[:, None, None] * py[:, :, None] * dpx[:, None, :]).reshape(n, -1)
        jy = -(amp[:, None, None] * dpy[:, :, None] * px[:, None, :]).reshape(n, -1)
        jac = np.stack([model, jx, jy, np.ones_like(model)], axis=1)  # (n, 4, pixels)
        resid = d - (amp[:, None] * model + off[:, None])
        jw = jac * wgt[:, None, :]
        # Batched matrix products (numpy's einsum has no fast path for these).
        a_mat = jw @ jac.transpose(0, 2, 1)
        g = (jw @ resid[:, :, None])[:, :, 0]
        return a_mat, g, np.einsum("np,np->n", wgt, resid * resid)

    with np.errstate(all="ignore"):
        for _ in range(iters):
            a_mat, g, _ = system(xs, ys, amp, off)
            if scaled_ridge:
                # Levenberg-Marquardt-style: 1e-9 of each parameter's own curvature, so the
                # amplitude, whose curvature is orders of magnitude below the centre's for a
                # bright star, is not held back by a ridge scaled to the whole trace.
                a_mat += eye * (1e-9 * np.diagonal(a_mat, axis1=1, axis2=2)[:, :, None] + 1e-30)
            else:
                a_mat += eye * (1e-9 * np.trace(a_mat, axis1=1, axis2=2)[:, None, None] + 1e-30)
            step = np.linalg.solve(a_mat, g[..., None])[..., 0]
            step = np.nan_to_num(step)
            amp = amp + step[:, 0]
            xs = xs + np.clip(step[:, 1], -0.5, 0.5)
            ys = ys + np.clip(step[:, 2], -0.5, 0.5)
            off = off + step[:, 3]
        if not errors:
            return xs, ys, amp, None
        a_mat, _, chi2 = system(xs, ys, amp, off)
        dof = (float(b * b) if wgt is None else wgt.sum(axis=1)) - 4.0
        det_ok = np.abs(np.linalg.det(a_mat)) > 0
        a_mat[~det_ok] = eye
        cov = np.linalg.inv(a_mat)
        var = np.stack([cov[:, 1, 1], cov[:, 2, 2]], axis=1) * (chi2 / np.maximum(dof, 1.0))[:, None]
        err = np.where((det_ok & (dof > 0))[:, None], np.sqrt(np.maximum(var, 0.0)), np.nan)
    return xs, ys, amp, err


def _refine_centroids(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, fwhm: float, half: int = 3, iters: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine positions by fitting a pixel-integrated circular Gaussian of fixed ``fwhm``.

    Batched Gauss-Newton on ``(2 half + 1)**2`` stamps of the background-subtracted ``data``
    with free amplitude, centre and constant offset (:func:`_fit_gaussian_stamps`). Unlike
    centroids from marginal distributions, this is unbiased for an undersampled PSF such as
    TESS's. Returns the new ``x, y`` and a bool array telling which fits converged (others
    keep their input).
    """
    n = x.size
    if n == 0:
        return x.copy(), y.copy(), np.zeros(0, dtype=bool)
    ic = np.floor(x + 0.5).astype(np.intp)
    ir = np.floor(y + 0.5).astype(np.intp)
    k = np.arange(-half, half + 1)
    rows = ir[:, None, None] + k[None, :, None]
    cols = ic[:, None, None] + k[None, None, :]
    inside = (rows >= 0) & (rows < data.shape[0]) & (cols >= 0) & (cols < data.shape[1])
    vals = data[np.clip(rows, 0, data.shape[0] - 1), np.clip(cols, 0, data.shape[1] - 1)]
    ok = inside & np.isfinite(vals)
    d = np.where(ok, vals, 0.0).reshape(n, -1).astype(np.float64)
    wgt = ok.reshape(n, -1).astype(np.float64)
    try:
        xs, ys, amp, _ = _fit_gaussian_stamps(d, wgt, ic, ir, x, y, half, fwhm, iters)
    except np.linalg.LinAlgError:
        return x.copy(), y.copy(), np.zeros(n, dtype=bool)
    good = (
        np.isfinite(xs)
        & np.isfinite(ys)
        & (amp > 0)
        & (np.abs(xs - x) < 1.0)
        & (np.abs(ys - y) < 1.0)
    )
    return np.where(good, xs, x), np.where(good, ys, y), good


def detect_stars(
    reference: np.ndarray,
    fwhm: float = 1.8,
    threshold_sigma: float = 5.0,
    max_stars: int | None = None,
    edge_px: int = 3,
    *,
    box_size: int = 64,
    refine: bool = True,
    min_snr: float = 3.0,
    min_separation: float = 1.0,
    radius: float = DEFAULT_RADIUS,
    annulus: tuple[float, float] = DEFAULT_ANNULUS,
    saturation_level: float = 1.5e5,
    science_area: ScienceArea | None = None,
) -> pd.DataFrame:
    """Find point sources on a reference image (e.g. a median stack of good frames).

    Steps: :func:`estimate_background`; DAOFIND (``photutils.detection.DAOStarFinder``) on the
    background-subtracted science area with a Gaussian kernel of ``fwhm`` and a per-pixel
    threshold of ``threshold_sigma`` times the background rms map; centroids refined by a
    batched least-squares fit of a pixel-integrated Gaussian of the same FWHM (kept from
    DAOFIND where the fit fails); sources within ``edge_px`` pixels of the science-area edge
    dropped; aperture photometry on the reference with :func:`forced_aperture_photometry`,
    using the background rms map as pixel uncertainty; sources whose aperture S/N is below
    ``min_snr`` dropped (noise peaks pass DAOFIND's peak test about once per 4 Mpixel at
    5 sigma, but carry no aperture flux; a real 5-sigma star has an aperture S/N of ~4.5).

    Parameters
    ----------
    reference : numpy.ndarray
        Reference image, shape ``(2078, 2136)``, e-/s, *not* background-subtracted.
    fwhm : float, optional
        PSF full width at half maximum in pixels (TESS: about 1.5-2).
    threshold_sigma : float, optional
        Detection threshold in units of the background rms (DAOFIND convention: applied to
        the kernel-convolved image, scaled to a peak amplitude).
    max_stars : int, optional
        Keep only this many of the brightest sources.
    edge_px : int, optional
        Drop sources whose centre is closer than this to the first/last science row/column.
    box_size : int, optional
        Box size of the background map.
    refine : bool, optional
        Refine DAOFIND centroids with the PSF fit.
    min_snr : float, optional
        Minimum background-limited aperture S/N (``flux / flux_err``) to keep; 0 keeps all.
    min_separation : float, optional
        Detections closer than this (px) after refinement are one source: the one with the
        higher DAOFIND peak is kept. (DAOFIND itself runs with photutils'
        ``min_separation=0``, i.e. local maxima within the kernel footprint, which is several
        times faster than its 3.0 default of 2.5 FWHM.)
    radius, annulus : optional
        Aperture and annulus for the ``flux`` column.
    saturation_level : float, optional
        Pixel level for the ``SATURATED`` bit of the ``quality`` column.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required for non-FFI shapes.

    Returns
    -------
    pandas.DataFrame
        One row per source, sorted by decreasing ``flux`` (ties by ``y`` then ``x``), index
        ``0..n-1``. Columns: ``x``, ``y`` (float64, 0-based full-array column and row),
        ``flux`` (background-subtracted aperture sum, e-/s), ``snr`` (its S/N against the
        background noise alone), ``bkg`` (local background per pixel, e-/s), ``peak``
        (highest background-subtracted pixel, e-/s), ``sharpness``, ``roundness1``,
        ``roundness2`` (DAOFIND), ``quality`` (int32 bits; ``SATURATED`` is the one to
        watch). The same input always gives the same output.

    Raises
    ------
    ValueError
        On a wrong image shape/dtype or bad parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from tess_ffi.services.photometer.photometry import FFI_SHAPE, detect_stars
    >>> rng = np.random.default_rng(1)
    >>> rows, cols = np.indices(FFI_SHAPE, dtype=np.float32)
    >>> s = 1.8 / 2.3548
    >>> image = rng.normal(150.0, 1.0, FFI_SHAPE).astype(np.float32)
    >>> for xc, yc, f in [(300.2, 400.7, 5000.0), (1500.6, 1200.1, 2000.0)]:
    ...     image += (f * np.exp(-((cols - xc)**2 + (rows - yc)**2) / (2 * s * s))
    ...               / (2 * np.pi * s * s)).astype(np.float32)
    >>> stars = detect_stars(image)                 # sorted by decreasing flux
    >>> stars[["x", "y"]].head(2).round(1).values.tolist()
    [[300.2, 400.7], [1500.6, 1200.1]]
    >>> list(stars.columns)
    ['x', 'y', 'flux', 'snr', 'bkg', 'peak', 'sharpness', 'roundness1', 'roundness2', 'quality']
    """
    reference = _check_image(reference, "reference")
    r0, r1, c0, c1 = _resolve_science_area(reference.shape, science_area)
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"fwhm must be finite and > 0, got {fwhm!r}")
    if not (math.isfinite(threshold_sigma) and threshold_sigma > 0):
        raise ValueError(f"threshold_sigma must be finite and > 0, got {threshold_sigma!r}")
    if max_stars is not None and (
        isinstance(max_stars, bool) or not isinstance(max_stars, (int, np.integer)) or max_stars < 1
    ):
        raise ValueError(f"max_stars must be None or a positive integer, got {max_stars!r}")
    if isinstance(edge_px, bool) or not isinstance(edge_px, (int, np.integer)) or edge_px < 0:
        raise ValueError(f"edge_px must be a non-negative integer, got {edge_px!r}")
    if not (math.isfinite(min_separation) and min_separation >= 0):
        raise ValueError(f"min_separation must be finite and >= 0, got {min_separation!r}")
    if not (math.isfinite(min_snr) and min_snr >= 0):
        raise ValueError(f"min_snr must be finite and >= 0, got {min_snr!r}")
    _check_radii(radius, annulus)

    from photutils.detection import DAOStarFinder  # imported lazily: slow import
    from photutils.utils.exceptions import NoDetectionsWarning

    box = (slice(r0, r1), slice(c0, c1))
    bkg, rms = estimate_background(reference, box_size, science_area=box)
    sub = reference[r0:r1, c0:c1].astype(np.float32) - bkg[r0:r1, c0:c1]
    bad = ~np.isfinite(sub)
    if bad.any():
        sub[bad] = 0.0
    # A floor (1e-5 of the sky level, well above float32 round-off of the background fit)
    # keeps noiseless synthetic images from detecting round-off as stars.
    level = float(np.nanmedian(np.abs(bkg[r0:r1, c0:c1])))
    del bkg  # not needed any more: keeps the memory peak of the star finder down
    floor = max(1e-5 * level, 1e-6 * float(np.max(np.abs(sub))), 1e-30)
    threshold = threshold_sigma * np.maximum(rms[r0:r1, c0:c1], floor)
    finder = DAOStarFinder(
        threshold=threshold, fwhm=float(fwhm), exclude_border=False, min_separation=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        table = finder(sub, mask=bad if bad.any() else None)

    columns = ["x", "y", "flux", "snr", "bkg", "peak", "sharpness", "roundness1", "roundness2"]
    if table is None or len(table) == 0:
        empty = pd.DataFrame({c: np.zeros(0, dtype=np.float64) for c in columns})
        empty["quality"] = np.zeros(0, dtype=np.int32)
        return empty

    xs = np.asarray(table["x_centroid"], dtype=np.float64)
    ys = np.asarray(table["y_centroid"], dtype=np.float64)
    if refine:
        sub_fit = np.where(bad, np.nan, sub) if bad.any() else sub
        xs, ys, _ = _refine_centroids(sub_fit, xs, ys, float(fwhm))
    xs = xs + c0
    ys = ys + r0
    keep = np.ones(xs.size, dtype=bool)
    if min_separation > 0 and xs.size > 1:
        pairs = cKDTree(np.c_[xs, ys]).query_pairs(float(min_separation), output_type="ndarray")
        if pairs.size:
            peak = np.asarray(table["peak"], dtype=np.float64)
            i, j = pairs[:, 0], pairs[:, 1]
            # drop the lower peak of each pair (ties: the later one)
            keep[np.where(peak[i] >= peak[j], j, i)] = False
    keep &= (
        (xs >= c0 + edge_px)
        & (xs <= c1 - 1 - edge_px)
        & (ys >= r0 + edge_px)
        & (ys <= r1 - 1 - edge_px)
    )
    idx = np.flatnonzero(keep)
    xs, ys = xs[idx], ys[idx]
    phot = forced_aperture_photometry(
        reference, xs, ys, uncertainty=rms, radius=radius, annulus=annulus,
        saturation_level=saturation_level, science_area=box,
    )  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = phot.flux.astype(np.float64) / phot.flux_err
    significant = snr >= min_snr if min_snr > 0 else np.ones(xs.size, dtype=bool)
    sel = idx[significant]
    out = pd.DataFrame(
        {
            "x": xs[significant],
            "y": ys[significant],
            "flux": phot.flux[significant].astype(np.float64),
            "snr": snr[significant],
            "bkg": phot.bkg[significant].astype(np.float64),
            "peak": np.asarray(table["peak"], dtype=np.float64)[sel],
            "sharpness": np.asarray(table["sharpness"], dtype=np.float64)[sel],
            "roundness1": np.asarray(table["roundness1"], dtype=np.float64)[sel],
            "roundness2": np.asarray(table["roundness2"], dtype=np.float64)[sel],
            "quality": phot.quality[significant],
        }
    )
    # Brightest first (NaN flux last), ties broken by row then column: fully deterministic.
    flux_key = np.where(np.isfinite(out["flux"].to_numpy()), -out["flux"].to_numpy(), np.inf)
    order = np.lexsort((out["x"].to_numpy(), out["y"].to_numpy(), flux_key))
    out = out.iloc[order].reset_index(drop=True)
    if max_stars is not None:
        out = out.iloc[: int(max_stars)].reset_index(drop=True)
    return out


# --------------------------------------------------------------------------------------------
# tracking: the pointing offset of one frame
# --------------------------------------------------------------------------------------------

#: Per-star position error added in quadrature to the fit's formal error when weighting the
#: offset fit (px): the PSF-model mismatch of a Gaussian fit to TESS-like stars is ~1e-3 px,
#: so the brightest stars do not outweigh all others by their photon noise alone.
_OFFSET_ERROR_FLOOR_PX = 0.002
#: Scale (px) of the positions in the affine design matrix: keeps it well conditioned.
_AFFINE_SCALE_PX = 1000.0


@dataclass(frozen=True)
class FrameOffset:
    """The pointing offset of one frame from its predicted star positions.

    A star predicted at ``(x, y)`` is found at ``(x + ox, y + oy)`` with
    ``ox = dx + dxdx * (x - x0) + dxdy * (y - y0)`` and ``oy = dy + dydx * (x - x0) +
    dydy * (y - y0)`` (see :meth:`offset_at` and :meth:`apply`). The linear terms are zero
    unless ``affine``.

    Attributes
    ----------
    dx, dy : float
        Offset (px, column and row) at the reference point ``(x0, y0)``; 0 when not ``ok``.
    dx_err, dy_err : float
        Their 1-sigma uncertainties (px; NaN when not ``ok``).
    dxdx, dxdy, dydx, dydy : float
        Linear terms (px per px): a rotation by a small angle ``t`` (radians) is
        ``dxdy = -t, dydx = t``; a plate-scale change ``s`` is ``dxdx = dydy = s``.
    x0, y0 : float
        Reference point: the centre of the science area.
    n_stars : int
        Tracking stars given.
    n_used : int
        Tracking stars whose fit converged and survived the sigma clipping.
    rms : float
        Root-mean-square residual per axis of the stars used (px; NaN when not ``ok``).
    affine : bool
        Whether the linear terms were fitted.
    ok : bool
        False when too few stars could be used: the offset is then zero (no correction).
    reason : str
        Why not ``ok`` (empty when ``ok``).
    """

    dx: float
    dy: float
    dx_err: float
    dy_err: float
    dxdx: float
    dxdy: float
    dydx: float
    dydy: float
    x0: float
    y0: float
    n_stars: int
    n_used: int
    rms: float
    affine: bool
    ok: bool
    reason: str = ""

    def offset_at(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The offset ``(ox, oy)`` (float64 arrays, px) of stars predicted at ``x, y``."""
        xa = np.asarray(x, dtype=np.float64) - self.x0
        ya = np.asarray(y, dtype=np.float64) - self.y0
        ox = self.dx + self.dxdx * xa + self.dxdy * ya
        oy = self.dy + self.dydx * xa + self.dydy * ya
        return ox, oy

    def apply(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Where stars predicted at ``x, y`` are on this frame (float64 arrays)."""
        ox, oy = self.offset_at(x, y)
        return np.asarray(x, dtype=np.float64) + ox, np.asarray(y, dtype=np.float64) + oy


def _check_int(value: object, name: str, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]``, or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def _check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), or ValueError naming it."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


def select_tracking_stars(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    *,
    shape: tuple[int, int] = FFI_SHAPE,
    science_area: ScienceArea | None = None,
    tmag_range: tuple[float, float] = (7.5, 12.0),
    isolation_px: float = 5.0,
    isolation_dmag: float = 3.0,
    edge_px: float = 8.0,
    max_stars: int = 200,
    cells: int = 8,
) -> np.ndarray:
    """Choose the stars that track a frame's pointing (see :func:`measure_frame_offset`).

    A tracking star is bright but unsaturated (``tmag_range``; TESS saturates near
    Tmag 6.8, and at Tmag 12 a star's position is still measured to ~1e-3 px on one FFI),
    isolated (no other star within ``isolation_px`` that is less than ``isolation_dmag``
    magnitudes fainter: a blend pulls the fitted centre) and at least ``edge_px`` from the
    science-area edges. Of those, at most ``max_stars`` are kept, spread over the CCD: the
    science area is cut into ``cells`` x ``cells`` cells and the cells are taken in turn,
    each giving its brightest remaining star (ties by index), so that the affine part of the
    offset fit sees the whole CCD. The choice depends only on the input.

    Parameters
    ----------
    x, y : array_like
        Full-array column and row of every star of the list (1-D, finite).
    tmag : array_like
        TESS magnitude of every star; NaN never tracks, and counts as a bright neighbour.
    shape : tuple of int, optional
        Frame shape; the FFI shape unless ``science_area`` is given.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required for non-FFI shapes.
    tmag_range : tuple of float, optional
        Brightest and faintest magnitude of a tracking star.
    isolation_px, isolation_dmag : float, optional
        Isolation radius (px) and magnitude difference.
    edge_px : float, optional
        Least distance (px) from the science-area edges.
    max_stars : int, optional
        Most stars returned.
    cells : int, optional
        Cells per axis for spreading the stars.

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into the star list.

    Raises
    ------
    ValueError
        On mismatched or non-finite positions, a ``tmag`` of another length, or bad
        parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from tess_ffi.services.photometer.photometry import select_tracking_stars
    >>> x = np.array([500.0, 503.0, 900.0, 1200.0, 1500.0, 46.0])
    >>> y = np.array([500.0, 500.0, 900.0, 1200.0, 1500.0, 700.0])
    >>> tmag = np.array([9.0, 10.0, 11.0, 13.5, 6.0, 9.0])
    >>> select_tracking_stars(x, y, tmag).tolist()   # 0 and 1 blend, 3 faint, 4 saturates, 5 edge
    [2]
    """
    xa, ya = _check_positions(x, y)
    t = np.asarray(tmag, dtype=np.float64)
    if t.shape != xa.shape:
        raise ValueError(f"tmag must have one value per star ({xa.size}), got shape {t.shape}")
    try:
        shp = (int(shape[0]), int(shape[1]))
        if len(shape) != 2 or min(shp) < 1:
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"shape must be a pair of positive integers, got {shape!r}") from None
    r0, r1, c0, c1 = _resolve_science_area(shp, science_area)
    try:
        lo, hi = (float(v) for v in tmag_range)
    except (TypeError, ValueError):
        raise ValueError(f"tmag_range must be a pair (brightest, faintest), got {tmag_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"tmag_range must be finite with brightest < faintest, got {tmag_range!r}")
    iso = _check_positive(isolation_px, "isolation_px", allow_zero=True)
    dmag = _check_positive(isolation_dmag, "isolation_dmag", allow_zero=True)
    edge = _check_positive(edge_px, "edge_px", allow_zero=True)
    nmax = _check_int(max_stars, "max_stars", 1)
    ncell = _check_int(cells, "cells", 1)

    cand = np.flatnonzero(
        (t >= lo) & (t <= hi)
        & (xa >= c0 + edge) & (xa <= c1 - 1 - edge) & (ya >= r0 + edge) & (ya <= r1 - 1 - edge)
    )  # fmt: skip
    if cand.size == 0:
        return cand.astype(np.int64)
    if iso > 0 and xa.size > 1:
        # Every (candidate, star) pair closer than the isolation radius, in one query.
        near = cKDTree(np.c_[xa[cand], ya[cand]]).sparse_distance_matrix(
            cKDTree(np.c_[xa, ya]), iso, output_type="ndarray"
        )
        ci, sj = near["i"], near["j"]
        other = cand[ci] != sj
        # A neighbour of unknown magnitude (NaN) counts as bright.
        blended = other & ~(t[sj] >= t[cand[ci]] + dmag)
        bad = np.zeros(cand.size, dtype=bool)
        bad[ci[blended]] = True
        cand = cand[~bad]
    # Round-robin over the cells, brightest first in each: rank within the cell, then
    # (rank, tmag, index) orders the stars.
    cx = np.clip(((xa[cand] - c0) * ncell / (c1 - c0)).astype(np.intp), 0, ncell - 1)
    cy = np.clip(((ya[cand] - r0) * ncell / (r1 - r0)).astype(np.intp), 0, ncell - 1)
    cell = cy * ncell + cx
    by_cell = np.lexsort((cand, t[cand], cell))
    sorted_cell = cell[by_cell]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_cell)) + 1]
    start = np.repeat(first, np.diff(np.r_[first, sorted_cell.size]))
    rank = np.empty(cand.size, dtype=np.intp)
    rank[by_cell] = np.arange(cand.size) - start
    order = np.lexsort((cand, t[cand], rank))
    return np.sort(cand[order[:nmax]]).astype(np.int64)


def _gather_stamps(
    flat: np.ndarray, shape: tuple[int, int], ic: np.ndarray, ir: np.ndarray, half: int
) -> np.ndarray:
    """``(n, (2 half + 1)**2)`` float64 stamps centred on pixels ``(ir, ic)`` (all inside)."""
    k = np.arange(-half, half + 1, dtype=np.intp)
    offsets = (k[:, None] * shape[1] + k[None, :]).reshape(-1)
    return np.take(flat, (ir * shape[1] + ic)[:, None] + offsets[None, :]).astype(np.float64)


def measure_frame_offset(
    image: np.ndarray,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    science_area: ScienceArea | None = None,
    box: int = 7,
    fwhm: float = 1.8,
    fit_affine: bool = True,
    min_stars: int = 3,
    min_affine_stars: int = 30,
    clip_sigma: float = 3.0,
    maxiters: int = 5,
    iters: int = 3,
    saturation_level: float = 1.5e5,
) -> FrameOffset:
    """Measure a frame's pointing offset from the predicted positions of tracking stars.

    1. Coarse: the background-subtracted (median of the box border), flux-weighted centroid
       of each star in a ``box`` x ``box`` stamp on its predicted pixel; the median offset
       of those centroids re-centres the stamps (so offsets up to ~``box / 3`` px are found).
    2. Fine: a pixel-integrated circular Gaussian of fixed ``fwhm`` with free amplitude,
       centre and sky level, fitted to every stamp at once by ``iters`` Gauss-Newton steps.
       Unlike centroids, which are biased by up to ~0.01 px for an undersampled PSF such as
       TESS's, the fit's centre is unbiased to ~1e-3 px even with a PSF halo.
    3. A weighted least-squares fit of the per-star offsets (weights from each fit's formal
       error, with a floor of 0.002 px) by a translation, plus linear terms in position
       (rotation, plate scale, shear) when ``fit_affine`` and at least ``min_affine_stars``
       stars spread over the science area (standard deviation of x and of y each >= 1/8 of
       its size) remain; iterated with ``clip_sigma`` clipping of the normalised residuals
       (robust scale: 1.4826 x their median absolute value, at least 1) until the set of
       stars no longer changes or ``maxiters`` passes.

    Stars whose stamp leaves the science area, holds a non-finite pixel or a pixel at or
    above ``saturation_level``, or whose fit fails or moves by 1 px or more from the coarse
    position, are not used. With fewer than ``min_stars`` stars left the result is not
    ``ok`` and the offset is zero (no correction). Everything is vectorised over the stars;
    a few hundred tracking stars take a few milliseconds.

    Parameters
    ----------
    image : numpy.ndarray
        Calibrated FFI, shape ``(2078, 2136)``, e-/s (any shape with ``science_area``).
    x, y : array_like
        Predicted full-array column and row of each tracking star (1-D, finite), e.g. from
        the header WCS; choose them with :func:`select_tracking_stars`.
    science_area : tuple of two slices, optional
        ``(rows, cols)`` of the science pixels; required for non-FFI shapes.
    box : int, optional
        Stamp side in pixels (odd, 5 to 15).
    fwhm : float, optional
        FWHM of the fitted Gaussian (px).
    fit_affine : bool, optional
        Also fit the linear terms when enough well-spread stars are available.
    min_stars : int, optional
        Fewest usable stars for a measurement (>= 1).
    min_affine_stars : int, optional
        Fewest usable stars for the linear terms (>= 6).
    clip_sigma : float, optional
        Clipping threshold in robust standard deviations.
    maxiters : int, optional
        Most fit-and-clip passes.
    iters : int, optional
        Gauss-Newton steps per star.
    saturation_level : float, optional
        Pixel value (e-/s) at or above which a star is not used.

    Returns
    -------
    FrameOffset

    Raises
    ------
    ValueError
        On a wrong image shape/dtype, mismatched or non-finite positions, or bad parameters.

    Examples
    --------
    Thirty-six stars (pixel-integrated Gaussians of sigma 0.75 px, a little narrower than
    the fitted model) on a sky of 100 e-/s, all shifted by (0.12, -0.07) px from where they
    were predicted:

    >>> import numpy as np
    >>> from scipy.special import erf
    >>> from tess_ffi.services.photometer.photometry import measure_frame_offset
    >>> rng = np.random.default_rng(0)
    >>> grid = np.arange(25.0, 290.0, 45.0)
    >>> x = np.repeat(grid, 6) + rng.uniform(-0.5, 0.5, 36)
    >>> y = np.tile(grid, 6) + rng.uniform(-0.5, 0.5, 36)
    >>> edges = np.arange(301) - 0.5
    >>> def profile(c):
    ...     return np.diff(0.5 * erf((edges[None, :] - c[:, None]) / (0.75 * 2 ** 0.5)), axis=1)
    >>> image = 100.0 + np.einsum("n,nr,nc->rc", np.full(36, 5e4), profile(y - 0.07),
    ...                           profile(x + 0.12))
    >>> area = (slice(0, 300), slice(0, 300))
    >>> off = measure_frame_offset(image, x, y, science_area=area)
    >>> round(off.dx, 3), round(off.dy, 3), off.n_used, off.affine, off.ok
    (0.12, -0.07, 36, True, True)
    >>> bool(abs(off.dx - 0.12) < 5 * off.dx_err and off.dx_err < 1e-3)
    True
    >>> xs, ys = off.apply([150.0], [150.0])          # where a star predicted there is
    >>> round(float(xs[0]), 3), round(float(ys[0]), 3)
    (150.12, 149.93)

    Too few stars: no correction, and the result says why.

    >>> off = measure_frame_offset(image, x[:2], y[:2], science_area=area)
    >>> off.ok, off.dx, off.reason
    (False, 0.0, 'only 2 of 2 tracking stars usable, 3 needed')
    """
    image = _check_image(image)
    xa, ya = _check_positions(x, y)
    r0, r1, c0, c1 = _resolve_science_area(image.shape, science_area)
    b = _check_int(box, "box", 5, 15)
    if b % 2 == 0:
        raise ValueError(f"box must be odd, got {box!r}")
    fw = _check_positive(fwhm, "fwhm")
    nmin = _check_int(min_stars, "min_stars", 1)
    naff = _check_int(min_affine_stars, "min_affine_stars", 6)
    ksig = _check_positive(clip_sigma, "clip_sigma")
    npass = _check_int(maxiters, "maxiters", 1)
    nsteps = _check_int(iters, "iters", 1)
    sat = float(saturation_level)
    if math.isnan(sat) or sat <= 0:
        raise ValueError(f"saturation_level must be > 0 (inf disables it), got {saturation_level!r}")

    half = b // 2
    shp = (int(image.shape[0]), int(image.shape[1]))
    flat = _flat_view(image)
    x0, y0 = 0.5 * (c0 + c1 - 1), 0.5 * (r0 + r1 - 1)
    n = xa.size

    def failed(n_used: int) -> FrameOffset:
        reason = f"only {n_used} of {n} tracking stars usable, {nmin} needed"
        return FrameOffset(0.0, 0.0, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0, x0, y0, n, n_used,
                           math.nan, False, False, reason)

    def stamps(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stamps on the nearest pixels of ``xs, ys``, and which are usable."""
        # Far-off positions are parked on a valid pixel (and marked unusable) before casting.
        inside = (xs >= c0 + half - 0.5) & (xs < c1 - half - 0.5) & (ys >= r0 + half - 0.5) & (
            ys < r1 - half - 0.5
        )
        ic = np.floor(np.where(inside, xs, c0 + half) + 0.5).astype(np.intp)
        ir = np.floor(np.where(inside, ys, r0 + half) + 0.5).astype(np.intp)
        d = _gather_stamps(flat, shp, ic, ir, half)
        usable = inside & np.all(np.isfinite(d), axis=1) & ~np.any(d >= sat, axis=1)
        return d, ic, ir, usable

    # 1. Coarse offset from background-subtracted centroids.
    d, ic, ir, usable = stamps(xa, ya)
    sq = d.reshape(n, b, b)
    border = np.concatenate([sq[:, 0, :], sq[:, -1, :], sq[:, 1:-1, 0], sq[:, 1:-1, -1]], axis=1)
    with np.errstate(invalid="ignore"):
        pos = np.maximum(sq - np.median(border, axis=1)[:, None, None], 0.0)
    k = np.arange(-half, half + 1, dtype=np.float64)
    total = pos.sum(axis=(1, 2))
    usable &= total > 0
    if np.count_nonzero(usable) < nmin:
        return failed(int(np.count_nonzero(usable)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = ic + (pos.sum(axis=1) @ k) / total - xa
        cy = ir + (pos.sum(axis=2) @ k) / total - ya
    coarse_x = float(np.median(cx[usable]))
    coarse_y = float(np.median(cy[usable]))

    # 2. Gaussian fits on stamps re-centred by the coarse offset.
    xs, ys = xa + coarse_x, ya + coarse_y
    d, ic, ir, ok2 = stamps(xs, ys)
    usable &= ok2
    idx = np.flatnonzero(usable)
    if idx.size < nmin:
        return failed(int(idx.size))
    try:
        fx, fy, amp, err = _fit_gaussian_stamps(
            d[idx], None, ic[idx], ir[idx], xs[idx], ys[idx], half, fw, nsteps, errors=True,
            scaled_ridge=True,
        )
    except np.linalg.LinAlgError:
        return failed(0)
    assert err is not None
    good = (
        np.isfinite(fx) & np.isfinite(fy) & (amp > 0) & np.all(np.isfinite(err), axis=1)
        & (np.abs(fx - xs[idx]) < 1.0) & (np.abs(fy - ys[idx]) < 1.0)
    )  # fmt: skip
    idx, fx, fy, err = idx[good], fx[good], fy[good], err[good]
    if idx.size < nmin:
        return failed(int(idx.size))

    # 3. Robust weighted fit of the offsets.
    ox, oy = fx - xa[idx], fy - ya[idx]
    sig = np.sqrt(0.5 * (err[:, 0] ** 2 + err[:, 1] ** 2) + _OFFSET_ERROR_FLOOR_PX**2)
    xi, yi = xa[idx], ya[idx]
    full = np.column_stack([np.ones(idx.size), (xi - x0) / _AFFINE_SCALE_PX,
                            (yi - y0) / _AFFINE_SCALE_PX])

    def solve(used: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray]:
        """Weighted least squares on the ``used`` stars: (affine, design, coef, a_w)."""
        affine = bool(
            fit_affine and np.count_nonzero(used) >= naff
            and np.std(xi[used]) >= (c1 - c0) / 8 and np.std(yi[used]) >= (r1 - r0) / 8
        )  # fmt: skip
        design = full if affine else full[:, :1]
        sw = 1.0 / sig[used]
        a_w = design[used] * sw[:, None]
        rhs = np.column_stack([ox[used], oy[used]]) * sw[:, None]
        coef = np.linalg.lstsq(a_w, rhs, rcond=None)[0]
        return affine, design, coef, a_w

    used = np.ones(idx.size, dtype=bool)
    for _ in range(npass):
        affine, design, coef, _a_w = solve(used)
        zx = (ox - design @ coef[:, 0]) / sig
        zy = (oy - design @ coef[:, 1]) / sig
        # Robust scale of the normalised residuals, never below 1 (the formal errors).
        sx = max(1.4826 * float(np.median(np.abs(zx[used]))), 1.0)
        sy = max(1.4826 * float(np.median(np.abs(zy[used]))), 1.0)
        keep = (np.abs(zx) <= ksig * sx) & (np.abs(zy) <= ksig * sy)
        if np.array_equal(keep, used):
            break
        used = keep
        if np.count_nonzero(used) < nmin:
            return failed(int(np.count_nonzero(used)))
    affine, design, coef, a_w = solve(used)  # the final set (the same fit if converged)
    nu = int(np.count_nonzero(used))
    rx = ox[used] - design[used] @ coef[:, 0]
    ry = oy[used] - design[used] @ coef[:, 1]
    dof = nu - design.shape[1]
    # Formal errors scaled by each axis's reduced chi-square when it exceeds 1.
    cov0 = float(np.linalg.pinv(a_w.T @ a_w)[0, 0])
    scale_x, scale_y = (
        max(float(np.sum((r / sig[used]) ** 2)) / dof, 1.0) if dof > 0 else 1.0 for r in (rx, ry)
    )
    lin = coef[1:] / _AFFINE_SCALE_PX if affine else np.zeros((2, 2))
    return FrameOffset(
        dx=float(coef[0, 0]),
        dy=float(coef[0, 1]),
        dx_err=math.sqrt(cov0 * scale_x),
        dy_err=math.sqrt(cov0 * scale_y),
        dxdx=float(lin[0, 0]),
        dxdy=float(lin[1, 0]),
        dydx=float(lin[0, 1]),
        dydy=float(lin[1, 1]),
        x0=x0,
        y0=y0,
        n_stars=n,
        n_used=nu,
        rms=float(np.sqrt(np.mean(0.5 * (rx * rx + ry * ry)))),
        affine=affine,
        ok=True,
    )


# --------------------------------------------------------------------------------------------
# contamination by neighbours
# --------------------------------------------------------------------------------------------


def _encircled_fraction(
    d: np.ndarray, r: float, sigmas: tuple[float, float], halo_fraction: float
) -> np.ndarray:
    """Fraction of a core + halo circular Gaussian PSF centred ``d`` px from the centre of a
    circle of radius ``r`` that falls inside it (the Rice / non-central chi-square CDF)."""
    core, halo = sigmas
    d2 = np.asarray(d, dtype=np.float64) ** 2
    inside_core = chndtr((r / core) ** 2, 2.0, d2 / core**2)
    inside_halo = chndtr((r / halo) ** 2, 2.0, d2 / halo**2)
    return np.asarray((1.0 - halo_fraction) * inside_core + halo_fraction * inside_halo)


def aperture_contamination(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    flux: npt.ArrayLike,
    radius: float = DEFAULT_RADIUS,
    *,
    fwhm: float = 1.75,
    halo_fraction: float = 0.1,
    halo_scale: float = 2.5,
    max_distance: float | None = None,
) -> np.ndarray:
    """Fraction of each star's aperture flux that comes from the other stars of the list.

    ``c_i = sum_j flux_j E(d_ij) / (flux_i E(0))`` over the stars ``j`` within
    ``max_distance`` of star ``i``, where ``E(d)`` is the fraction of a star's light that
    falls in a circular aperture of ``radius`` whose centre is ``d`` px from the star. The PSF
    is a generic TESS-like one, independent of any simulator: a circular Gaussian core of
    FWHM ``fwhm`` (1.75 px, about TESS's near the field centre) holding ``1 - halo_fraction``
    of the light, plus a Gaussian halo ``halo_scale`` times wider holding ``halo_fraction``
    (10 %: TESS PSFs have extended wings). Each Gaussian's variance is increased by 1/6 px^2
    per axis, which accounts for integrating the PSF over pixels and measuring it with
    pixel-overlap weights. ``E`` is then exact: the non-central chi-square distribution
    with two degrees of freedom (``scipy.special.chndtr``). Pairs come from one
    ``cKDTree.query_pairs``; nothing loops over stars. The default ``max_distance`` is
    ``radius + 4`` px (6 px for the default aperture): a star farther away leaks less than
    4e-4 of its flux into the aperture.

    Parameters
    ----------
    x, y : array_like
        Column and row of every star (1-D, finite, px).
    flux : array_like
        Flux of every star in any unit (finite, >= 0), e.g. from catalog magnitudes.
    radius : float, optional
        Aperture radius (px).
    fwhm : float, optional
        FWHM of the PSF core (px).
    halo_fraction : float, optional
        Fraction of the light in the halo, in ``[0, 1)``.
    halo_scale : float, optional
        Halo width over core width (>= 1).
    max_distance : float, optional
        Neighbours farther than this (px) are ignored.

    Returns
    -------
    numpy.ndarray
        float64 contaminating fraction per star: 0 for an isolated star; ``inf`` for a star
        of zero flux that receives light.

    Raises
    ------
    ValueError
        On mismatched or non-finite positions, bad fluxes or bad parameters.

    Examples
    --------
    A star with a star twice as bright 2 px away, and an isolated one:

    >>> from tess_ffi.services.photometer.photometry import aperture_contamination
    >>> c = aperture_contamination([100.0, 102.0, 500.0], [100.0, 100.0, 500.0],
    ...                            [1000.0, 2000.0, 1000.0])
    >>> c.round(3).tolist()
    [0.902, 0.226, 0.0]
    """
    xa, ya = _check_positions(x, y)
    f = np.asarray(flux, dtype=np.float64)
    if f.shape != xa.shape:
        raise ValueError(f"flux must have one value per star ({xa.size}), got shape {f.shape}")
    bad = ~(np.isfinite(f) & (f >= 0))
    if bad.any():
        raise ValueError(
            f"flux must be finite and >= 0; {int(bad.sum())} bad value(s), first at index "
            f"{int(np.argmax(bad))}"
        )
    r = _check_positive(radius, "radius")
    fw = _check_positive(fwhm, "fwhm")
    h = float(halo_fraction)
    if not (0.0 <= h < 1.0):
        raise ValueError(f"halo_fraction must be in [0, 1), got {halo_fraction!r}")
    hs = _check_positive(halo_scale, "halo_scale")
    if hs < 1.0:
        raise ValueError(f"halo_scale must be >= 1, got {halo_scale!r}")
    dmax = r + 4.0 if max_distance is None else _check_positive(max_distance, "max_distance")

    core = fw * _FWHM_TO_SIGMA
    sigmas = (math.sqrt(core**2 + 1.0 / 6.0), math.sqrt((hs * core) ** 2 + 1.0 / 6.0))
    received: np.ndarray = np.zeros(xa.size)
    if xa.size > 1:
        pairs = cKDTree(np.c_[xa, ya]).query_pairs(dmax, output_type="ndarray")
        if pairs.size:
            i, j = pairs[:, 0], pairs[:, 1]
            e = _encircled_fraction(np.hypot(xa[i] - xa[j], ya[i] - ya[j]), r, sigmas, h)
            received = np.bincount(i, weights=f[j] * e, minlength=xa.size) + np.bincount(
                j, weights=f[i] * e, minlength=xa.size
            )
    own = f * float(_encircled_fraction(np.zeros(1), r, sigmas, h)[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(received > 0, received / own, 0.0)
