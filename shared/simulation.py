"""A deterministic simulated TESS sector, rendered in memory.

:class:`SimulatedSector` stands in for a real sector of calibrated Full-Frame Images (FFIs). It
is used by the fetcher (source ``sim``), by the enricher (its star catalog stands in for the
TIC), by tests and by benchmarks. Everything is a pure function of the
:class:`SimulationConfig`: the same config gives the same catalog and byte-identical FITS files,
and any cadence can be rendered alone, in any order.

What the photometer and analyzer need to know
---------------------------------------------
Layout
    Images are numpy arrays of shape ``(2078, 2136)`` (rows, columns) like a real calibrated
    FFI. Science pixels are ``[0:2048, 44:2092]`` (:data:`SCIENCE_ROWS`, :data:`SCIENCE_COLS`);
    the collateral columns and the buffer/smear/virtual rows hold pure read noise around 0
    and never any starlight. Pixel coordinates are 0-based (column ``x``, row ``y``) with
    integer values at pixel centres, i.e. astropy's ``origin=0`` convention.
WCS
    A plain TAN WCS (CD matrix, CRPIX 1045, 1001 as SPOC writes it) derived from the real
    spacecraft pointing of the sector (sectors 1-26 built in, later sectors reuse
    ``(sector - 1) % 26 + 1``) and a simplified TESS focal-plane model. For sector 1,
    camera 2, CCD 3 it agrees with the real SPOC WCS to ~10 px at the centre and ~60 px at
    the corners (the real one carries SIP distortion, this one has none). Catalog ``x, y``
    are exactly ``wcs.world_to_pixel_values(ra, dec)``.
Flux scale
    A star of TESS magnitude ``T`` gives ``15000 * 10**(-0.4 * (T - 10))`` e-/s in total
    (:func:`tmag_to_flux`), spread by a pixel-integrated double-Gaussian PSF (FWHM about
    1.75 px at the camera boresight, up to about 10 % wider at the far corner of a CCD).
    Pixel values are e-/s over the effective exposure, not background-subtracted.
Exposure and noise
    The effective exposure per cadence is ``cadence_s * 0.99 * 0.8`` (header ``DEADC = 0.792``,
    ``EXPOSURE`` in days): 2 s frames of 1.98 s integration, of which cosmic-ray mitigation
    keeps 8 in 10. Read noise (``READNOIA``-``D``, about 8-10 e- per read, per CCD output) is
    paid ``NREADOUT = 0.8 * NUM_FRM`` times. Each pixel gets Gaussian noise of
    ``sqrt(model * T_eff + NREADOUT * rn**2) / T_eff`` e-/s (:func:`pixel_sigma`) and HDU 2
    is exactly that sigma. :meth:`SimulatedSector.expected_noise` turns this into the
    expected noise of a circular-aperture sum for every star and cadence.
Background
    80-200 e-/s/px with a smooth spatial gradient, plus scattered light that decays after each
    orbit start, rises before each orbit end and has a bump mid-orbit (:meth:`~SimulatedSector.
    scattered_light`); cadences where it exceeds :data:`SCATTER_FLAG_LEVEL` carry DQUALITY bit
    4096. Orbits hold 13 d of data and are separated by a 1 d downlink gap.
Pointing
    Every frame is shifted by a small random offset (``jitter_px`` rms per axis), a slow drift
    that resets at each momentum dump, and a larger kick on the momentum-dump cadence itself
    (DQUALITY bit 32, one cadence every 3.125 d). :meth:`~SimulatedSector.pointing_offset`
    gives the truth.
Saturation
    Pixels above :data:`SATURATION_E_S` (a full well of 1.3e5 e- per 1.98 s frame) are clipped
    and the excess charge bleeds up and down the column, conserving flux while on the chip;
    stars brighter than about Tmag 6.8 saturate (catalog column ``saturated``).
Variability truth
    ``catalog`` holds ``var_class``, ``period``, ``amplitude`` (peak-to-peak of the relative
    flux model) and ``epoch`` (BTJD of the primary minimum for EA/EW/TRANSIT, phase zero for
    ROT/DSCT, the peak of the largest flare for FLARE). :meth:`~SimulatedSector.relative_flux`
    is the model actually rendered: it is averaged over the exposure, so very short events are
    smeared exactly as in the images. Times are barycentric (BTJD) mid-exposure times.

Examples
--------
>>> from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig
>>> sim = SimulatedSector(SimulationConfig(n_stars=20, n_cadences=4))
>>> image, sigma, header = sim.render(0)
>>> image.shape, image.dtype, header["NUM_FRM"]
((2078, 2136), dtype('float32'), 900)
>>> sim.ffi_filename(0)
'tess2018206191051-s0001-1-1-0120-s_ffic.fits'
"""

from __future__ import annotations

import io
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy.special import erf

from tess_ffi.shared.quality import QualityFlags

__all__ = [
    "SimulationConfig",
    "SimulatedSector",
    "simulation_config",
    "VARIABLE_CLASSES",
    "IMAGE_SHAPE",
    "SCIENCE_ROWS",
    "SCIENCE_COLS",
    "ZERO_POINT_FLUX",
    "ZERO_POINT_TMAG",
    "DEADC",
    "FRAME_TIME_S",
    "INT_TIME_S",
    "SATURATION_E_S",
    "READ_NOISE_E",
    "GAINS",
    "PSF_FWHM_PX",
    "SCATTER_FLAG_LEVEL",
    "MOMENTUM_DUMP_INTERVAL_D",
    "FFI_NAME_RE",
    "tmag_to_flux",
    "flux_to_tmag",
    "default_cadence_s",
    "sector_start_btjd",
    "effective_exposure_s",
    "n_frames",
    "n_readouts",
    "pixel_sigma",
    "science_mask",
    "read_noise_per_column",
]

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------------------------
# Detector and instrument constants
# --------------------------------------------------------------------------------------------

#: numpy shape (rows, columns) of a calibrated FFI image.
IMAGE_SHAPE: tuple[int, int] = (2078, 2136)
#: Half-open numpy row range of the science pixels.
SCIENCE_ROWS: tuple[int, int] = (0, 2048)
#: Half-open numpy column range of the science pixels.
SCIENCE_COLS: tuple[int, int] = (44, 2092)
#: Total flux in e-/s of a star of TESS magnitude :data:`ZERO_POINT_TMAG`.
ZERO_POINT_FLUX: float = 15000.0
ZERO_POINT_TMAG: float = 10.0
#: Frame time (integration + readout) and integration time of one 2 s exposure.
FRAME_TIME_S: float = 2.0
INT_TIME_S: float = 1.98
READ_TIME_S: float = 0.02
#: Fraction of frames kept by on-board cosmic-ray mitigation (8 of every 10).
CRM_KEEP_FRACTION: float = 0.8
#: Dead-time correction: effective exposure = cadence * DEADC.
DEADC: float = INT_TIME_S / FRAME_TIME_S * CRM_KEEP_FRACTION
#: Full well per 1.98 s frame (e-) and the e-/s level at which a pixel saturates.
FULL_WELL_E: float = 1.3e5
SATURATION_E_S: float = FULL_WELL_E / INT_TIME_S
#: Gains (e-/count) and read noise (e- per read) of CCD outputs A-D (from a real sector 1 FFI).
GAINS: tuple[float, float, float, float] = (5.28, 5.26, 5.25, 5.21)
READ_NOISE_E: tuple[float, float, float, float] = (9.8736, 7.627, 7.7175, 9.899)
#: Nominal PSF FWHM (px) at the camera boresight.
PSF_FWHM_PX: float = 1.75
_PSF_CORE_SIGMA = 0.7323230379  # sigma of the core giving PSF_FWHM_PX with the halo below
_PSF_HALO_RATIO = 2.2
_PSF_HALO_FRACTION = 0.12
_PSF_FIELD_GROWTH = 0.10  # relative sigma growth at the CCD corner farthest from the boresight
#: Scattered light (e-/s/px at its brightest corner) above which a cadence gets bit 4096.
SCATTER_FLAG_LEVEL: float = 40.0
MOMENTUM_DUMP_INTERVAL_D: float = 3.125
_FIRST_DUMP_D = 1.5
_ORBIT_DATA_D = 13.0
_ORBIT_GAP_D = 1.0
_BJDREFI = 2457000
_TMAG_RANGE = (6.0, 15.0)
_TMAG_SLOPE = 0.25  # dN/dT proportional to 10**(slope * T)
_BRIGHT_STAMP_TMAG = 12.5  # stars brighter than this get a 19x19 stamp, fainter 11x11
_N_SUBSAMPLES = 9  # sub-exposure samples for exposure-averaged variability
_MAX_STARS = 100_000
_FOCAL_MM = 146.0
_PIXEL_MM = 0.015
#: Real-looking file names of calibrated FFIs.
FFI_NAME_RE = re.compile(
    r"^tess(\d{4})(\d{3})(\d{2})(\d{2})(\d{2})-s(\d{4})-([1-4])-([1-4])-(\d{4})-s_ffic\.fits$"
)

VARIABLE_CLASSES: tuple[str, ...] = ("EA", "EW", "ROT", "DSCT", "TRANSIT", "FLARE", "CONST")
_CLASS_SHARES: dict[str, float] = {
    "EA": 0.20,
    "EW": 0.15,
    "ROT": 0.30,
    "DSCT": 0.15,
    "TRANSIT": 0.10,
    "FLARE": 0.10,
}

# Spacecraft pointing (RA, Dec, roll in degrees) and first-cadence BTJD of sectors 1-26
# (MAST/tesswcs pointings, tess-locator sector start dates).
_POINTINGS: dict[int, tuple[float, float, float, float]] = {
    1: (352.6844, -64.8531, 222.1532, 1325.2928),
    2: (16.5571, -54.0160, 220.4335, 1354.1010),
    3: (36.3138, -44.2590, 213.0384, 1382.0399),
    4: (55.0070, -36.6420, 202.8302, 1410.8997),
    5: (73.5382, -31.9349, 191.0517, 1437.8257),
    6: (92.0096, -30.5839, 178.6367, 1465.2126),
    7: (110.2559, -32.6344, 166.4476, 1491.6255),
    8: (128.1156, -37.7370, 155.3091, 1517.3408),
    9: (145.9071, -45.3044, 145.9163, 1543.2158),
    10: (165.0475, -54.8165, 139.1724, 1569.4310),
    11: (189.1247, -65.5369, 138.0761, 1596.7713),
    12: (229.5885, -75.1256, 153.9773, 1624.9491),
    13: (298.6671, -76.3281, 198.9378, 1653.9143),
    14: (276.7169, 62.4756, 32.2329, 1683.3477),
    15: (280.3985, 64.0671, 55.4277, 1711.3588),
    16: (282.4427, 66.1422, 79.4699, 1738.6463),
    17: (351.2381, 57.8456, 41.9686, 1764.6782),
    18: (16.1103, 67.9575, 40.5453, 1790.6504),
    19: (60.2026, 76.2343, 19.6463, 1816.0768),
    20: (129.3867, 75.2520, 334.5689, 1842.4976),
    21: (171.7951, 65.1924, 317.9495, 1870.4281),
    22: (197.1008, 53.7434, 319.6992, 1899.3003),
    23: (217.2879, 43.8074, 327.4246, 1928.0989),
    24: (261.4516, 63.1181, 317.2624, 1955.7892),
    25: (265.6098, 61.9383, 339.5293, 1983.6267),
    26: (270.1381, 61.5637, 0.6038, 2010.2614),
}
_SECTOR_LENGTH_D = 27.3
# Spacecraft configuration IDs seen in real file names (others are interpolated).
_KNOWN_SCID: dict[int, int] = {1: 120, 4: 124, 17: 161, 18: 162, 20: 165, 24: 180}
# Camera Euler angles (deg) relative to the spacecraft frame and CCD geometry in the focal
# plane (mm; CCDs 1 and 2 are rotated by 180 degrees), idealised from tess-point.
_CAMERA_EULER: dict[int, tuple[float, float, float]] = {
    1: (0.0, -36.0, 90.0),
    2: (0.0, -12.0, 90.0),
    3: (0.0, 12.0, -90.0),
    4: (0.0, 36.0, -90.0),
}
_CCD_ORIGIN_MM: dict[int, tuple[float, float]] = {
    1: (31.6, 31.5),
    2: (-0.87, 31.5),
    3: (-31.6, -31.6),
    4: (0.87, -31.6),
}
_CRPIX = (1045.0, 1001.0)  # 1-based, as in SPOC FFI headers
_BTC_PIX = (1068.0, 1024.0)  # 1-based reference pixel of the barycentric correction

# Real collateral layout (1-based, inclusive) of calibrated FFIs, copied into HDU 1.
_COLLATERAL_CARDS: list[tuple[str, Any, str]] = [
    ("LVCSA", 1, "serial register col start, output A"),
    ("LVCEA", 11, "serial register col end (inclusive), output A"),
    ("TVCSA", 2093, "trailing virtual column start, output A"),
    ("TVCEA", 2103, "trailing virtual column end (inclusive), output A"),
    ("SCCSA", 45, "science col start, output A"),
    ("SCCEA", 556, "science col end (inclusive), output A"),
    ("SCICOLHA", True, "T science cols are read increasing order else d"),
    ("LVCSB", 12, "serial register col start, output B"),
    ("LVCEB", 22, "serial register col end (inclusive), output B"),
    ("TVCSB", 2104, "trailing virtual column start, output B"),
    ("TVCEB", 2114, "trailing virtual column end (inclusive), output B"),
    ("SCCSB", 557, "science col start, output B"),
    ("SCCEB", 1068, "science col end (inclusive), output B"),
    ("SCICOLHB", False, "T science cols are read increasing order else d"),
    ("LVCSC", 23, "serial register col start, output C"),
    ("LVCEC", 33, "serial register col end (inclusive), output C"),
    ("TVCSC", 2115, "trailing virtual column start, output C"),
    ("TVCEC", 2125, "trailing virtual column end (inclusive), output C"),
    ("SCCSC", 1069, "science col start, output C"),
    ("SCCEC", 1580, "science col end (inclusive), output C"),
    ("SCICOLHC", True, "T science cols are read increasing order else d"),
    ("LVCSD", 34, "serial register col start, output D"),
    ("LVCED", 44, "serial register col end (inclusive), output D"),
    ("TVCSD", 2126, "trailing virtual column start, output D"),
    ("TVCED", 2136, "trailing virtual column end (inclusive), output D"),
    ("SCCSD", 1581, "science col start, output D"),
    ("SCCED", 2092, "science col end (inclusive), output D"),
    ("SCICOLHD", False, "T science cols are read increasing order else d"),
    ("SCIROWS", 1, "science rows start"),
    ("SCIROWE", 2048, "science rows end (inclusive)"),
    ("VROWS", 2069, "virtual row start"),
    ("VROWE", 2078, "virtual row end (inclusive)"),
    ("SMROWS", 2059, "smear rows start"),
    ("SMROWE", 2068, "smear rows end (inclusive)"),
    ("BFROWS", 2049, "buffer rows start"),
    ("BFROWE", 2058, "buffer rows end (inclusive)"),
]


# --------------------------------------------------------------------------------------------
# Small public helpers
# --------------------------------------------------------------------------------------------


def tmag_to_flux(tmag: npt.ArrayLike) -> FloatArray:
    """Total stellar flux in e-/s for a TESS magnitude.

    Parameters
    ----------
    tmag : array_like
        TESS magnitude(s).

    Returns
    -------
    numpy.ndarray
        ``15000 * 10**(-0.4 * (tmag - 10))`` e-/s, summed over the whole PSF.

    Examples
    --------
    >>> float(tmag_to_flux(10.0)), float(tmag_to_flux(12.5))
    (15000.0, 1500.0)
    """
    return np.asarray(
        ZERO_POINT_FLUX * 10.0 ** (-0.4 * (np.asarray(tmag, float) - ZERO_POINT_TMAG))
    )


def flux_to_tmag(flux: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`tmag_to_flux`.

    Parameters
    ----------
    flux : array_like
        Total flux in e-/s (positive).

    Returns
    -------
    numpy.ndarray
        TESS magnitude(s).

    Examples
    --------
    >>> float(flux_to_tmag(1500.0))
    12.5
    """
    return np.asarray(ZERO_POINT_TMAG - 2.5 * np.log10(np.asarray(flux, float) / ZERO_POINT_FLUX))


def default_cadence_s(sector: int) -> float:
    """FFI cadence of a sector in seconds: 1800 (1-26), 600 (27-55), 200 (56 on).

    Parameters
    ----------
    sector : int
        TESS sector number.

    Returns
    -------
    float
        Cadence in seconds.

    Examples
    --------
    >>> default_cadence_s(1), default_cadence_s(40), default_cadence_s(61)
    (1800.0, 600.0, 200.0)
    """
    if sector <= 26:
        return 1800.0
    if sector <= 55:
        return 600.0
    return 200.0


def sector_start_btjd(sector: int) -> float:
    """Approximate BTJD of the first FFI of a sector.

    Real for sectors 1-26, extrapolated at 27.3 d per sector beyond.

    Parameters
    ----------
    sector : int
        TESS sector number (>= 1).

    Returns
    -------
    float
        BTJD of the start of the first cadence.

    Examples
    --------
    >>> round(sector_start_btjd(1), 2)
    1325.31
    """
    if sector in _POINTINGS:
        start = _POINTINGS[sector][3]
    else:
        start = _POINTINGS[26][3] + (sector - 26) * _SECTOR_LENGTH_D
    return round(start + 0.0203, 4)


def n_frames(cadence_s: float) -> int:
    """Number of 2 s frames co-added into one cadence (``NUM_FRM``).

    Examples
    --------
    >>> n_frames(1800.0), n_frames(200.0)
    (900, 100)
    """
    return max(1, int(round(cadence_s / FRAME_TIME_S)))


def n_readouts(cadence_s: float) -> int:
    """Number of reads kept after cosmic-ray mitigation (``NREADOUT`` = 0.8 * ``NUM_FRM``).

    Examples
    --------
    >>> n_readouts(1800.0), n_readouts(600.0)
    (720, 240)
    """
    return max(1, int(round(n_frames(cadence_s) * CRM_KEEP_FRACTION)))


def effective_exposure_s(cadence_s: float) -> float:
    """Effective exposure of a cadence in seconds: ``NUM_FRM * 1.98 s * 0.8``.

    Examples
    --------
    >>> round(effective_exposure_s(1800.0), 3)
    1425.6
    """
    return n_frames(cadence_s) * INT_TIME_S * CRM_KEEP_FRACTION


def pixel_sigma(
    model_e_s: npt.ArrayLike, cadence_s: float, read_noise_e: npt.ArrayLike
) -> FloatArray:
    """One-sigma noise in e-/s of a pixel (or of a sum of pixels) under the simulation's model.

    Parameters
    ----------
    model_e_s : array_like
        Noiseless signal (star + background) in e-/s; negative values count as 0.
    cadence_s : float
        Cadence in seconds.
    read_noise_e : array_like
        Read noise per read in e- (broadcast against ``model_e_s``). For a sum of ``n`` pixels
        pass ``sqrt(n) * rn``.

    Returns
    -------
    numpy.ndarray
        ``sqrt(model * T_eff + NREADOUT * rn**2) / T_eff``.

    Examples
    --------
    >>> round(float(pixel_sigma(100.0, 1800.0, 10.0)), 4)
    0.3249
    """
    t_eff = effective_exposure_s(cadence_s)
    var = np.maximum(np.asarray(model_e_s, float), 0.0) * t_eff
    var = var + n_readouts(cadence_s) * np.asarray(read_noise_e, float) ** 2
    return np.asarray(np.sqrt(var) / t_eff)


def science_mask() -> npt.NDArray[np.bool_]:
    """Boolean image, True on the science pixels of a calibrated FFI.

    Examples
    --------
    >>> m = science_mask()
    >>> m.shape, int(m.sum()) == 2048 * 2048
    ((2078, 2136), True)
    """
    mask = np.zeros(IMAGE_SHAPE, dtype=bool)
    mask[SCIENCE_ROWS[0] : SCIENCE_ROWS[1], SCIENCE_COLS[0] : SCIENCE_COLS[1]] = True
    return mask


def _output_of_column() -> npt.NDArray[np.int64]:
    """CCD output (0-3 for A-D) of every image column, science and collateral."""
    col = np.arange(IMAGE_SHAPE[1])
    out = np.empty(IMAGE_SHAPE[1], dtype=np.int64)
    sci = (col >= SCIENCE_COLS[0]) & (col < SCIENCE_COLS[1])
    out[sci] = (col[sci] - SCIENCE_COLS[0]) // 512
    lead = col < SCIENCE_COLS[0]
    out[lead] = np.minimum(col[lead] // 11, 3)
    trail = col >= SCIENCE_COLS[1]
    out[trail] = np.minimum((col[trail] - SCIENCE_COLS[1]) // 11, 3)
    return out


def read_noise_per_column() -> FloatArray:
    """Read noise (e- per read) of every image column, by CCD output.

    Examples
    --------
    >>> rn = read_noise_per_column()
    >>> rn.shape, float(rn[44]) == READ_NOISE_E[0], float(rn[2091]) == READ_NOISE_E[3]
    ((2136,), True, True)
    """
    return np.asarray(READ_NOISE_E, float)[_output_of_column()]


def _fill_header(header: fits.Header, cards: Sequence[tuple[str, Any, str]]) -> None:
    """Append cards, shortening comments so that every card fits in 80 characters."""
    for key, value, comment in cards:
        used = len(fits.Card(key, value).image.rstrip())
        room = max(0, 80 - used - 3)
        header[key] = (value, comment[:room])


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated sector; the simulation is a pure function of them.

    Parameters
    ----------
    sector, camera, ccd : int
        Sector (>= 1), camera (1-4) and CCD (1-4). They select the pointing and file names.
    n_stars : int
        Stars on the science area (0 to 100,000).
    n_cadences : int
        Number of FFIs.
    cadence_s : float
        Cadence in seconds (real: 1800 for sectors 1-26, 600 for 27-55, 200 from 56; see
        :meth:`for_sector`).
    t_start_btjd : float
        Start of cadence 0 on the spacecraft clock, in TJD. The headers' TSTART adds the
        barycentric correction (a few minutes) to it.
    seed : int
        Non-negative random seed.
    variable_fraction : float
        Fraction of stars that are injected variables.
    jitter_px : float
        RMS pointing jitter per frame and axis in pixels (drift and momentum-dump kicks scale
        with it; 0 gives a perfectly still pointing).

    Examples
    --------
    >>> SimulationConfig.for_sector(40, n_stars=10).cadence_s
    600.0
    >>> SimulationConfig(camera=5)
    Traceback (most recent call last):
    ...
    ValueError: camera must be 1-4, got 5
    """

    sector: int = 1
    camera: int = 1
    ccd: int = 1
    n_stars: int = 1500
    n_cadences: int = 240
    cadence_s: float = 1800.0
    t_start_btjd: float = 1325.3
    seed: int = 0
    variable_fraction: float = 0.12
    jitter_px: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.camera <= 4:
            raise ValueError(f"camera must be 1-4, got {self.camera}")
        if not 1 <= self.ccd <= 4:
            raise ValueError(f"ccd must be 1-4, got {self.ccd}")
        if self.sector < 1:
            raise ValueError(f"sector must be >= 1, got {self.sector}")
        if not 0 <= self.n_stars <= _MAX_STARS:
            raise ValueError(f"n_stars must be 0-{_MAX_STARS}, got {self.n_stars}")
        if self.n_cadences < 1:
            raise ValueError(f"n_cadences must be >= 1, got {self.n_cadences}")
        if not self.cadence_s >= FRAME_TIME_S:
            raise ValueError(f"cadence_s must be >= {FRAME_TIME_S}, got {self.cadence_s}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.variable_fraction <= 1.0:
            raise ValueError(f"variable_fraction must be in [0, 1], got {self.variable_fraction}")
        if not self.jitter_px >= 0.0:
            raise ValueError(f"jitter_px must be >= 0, got {self.jitter_px}")

    @classmethod
    def for_sector(cls, sector: int, **overrides: Any) -> SimulationConfig:
        """Config with the real cadence and (approximate) start time of ``sector``.

        Parameters
        ----------
        sector : int
            TESS sector number.
        **overrides
            Any other field of :class:`SimulationConfig`.

        Returns
        -------
        SimulationConfig

        Examples
        --------
        >>> cfg = SimulationConfig.for_sector(61, n_cadences=10)
        >>> cfg.cadence_s, cfg.n_cadences
        (200.0, 10)
        """
        values: dict[str, Any] = {
            "sector": sector,
            "cadence_s": default_cadence_s(sector),
            "t_start_btjd": sector_start_btjd(sector),
        }
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> SimulationConfig:
        """Copy with some fields changed (``dataclasses.replace``).

        Examples
        --------
        >>> SimulationConfig().with_(seed=3).seed
        3
        """
        return replace(self, **changes)


def simulation_config(job: Any) -> SimulationConfig:
    """The simulator configuration a pipeline job asks for.

    Parameters
    ----------
    job : object
        Anything with ``sector``, ``camera`` and ``ccd`` attributes and, optionally, ``sim``: a
        mapping of further :class:`SimulationConfig` fields (``n_stars``, ``seed`` ...).

    Returns
    -------
    SimulationConfig

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> job = SimpleNamespace(sector=2, camera=3, ccd=4, sim={"n_stars": 10, "seed": 7})
    >>> cfg = simulation_config(job)
    >>> (cfg.sector, cfg.camera, cfg.ccd, cfg.n_stars, cfg.seed)
    (2, 3, 4, 10, 7)
    """
    options = dict(getattr(job, "sim", None) or {})
    return SimulationConfig(
        sector=int(job.sector), camera=int(job.camera), ccd=int(job.ccd), **options
    )


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def _rotm(axis: int, angle: float) -> FloatArray:
    """Rotation matrix about one axis (tess-point convention)."""
    mat = np.zeros((3, 3))
    n1 = axis
    n2 = (n1 + 1) % 3
    n3 = (n2 + 1) % 3
    c, s = math.cos(angle), math.sin(angle)
    mat[n1, n1] = 1.0
    mat[n2, n2] = c
    mat[n3, n3] = c
    mat[n2, n3] = s
    mat[n3, n2] = -s
    return mat


def _euler323(a: float, b: float, c: float) -> FloatArray:
    return _rotm(2, c) @ _rotm(1, b) @ _rotm(2, a)


def _pointing(sector: int) -> tuple[float, float, float]:
    ra, dec, roll, _ = _POINTINGS[(sector - 1) % 26 + 1]
    return ra, dec, roll


def _sky_to_camera(sector: int, camera: int) -> FloatArray:
    """Rotation matrix from equatorial unit vectors to the camera frame."""
    ra, dec, roll = _pointing(sector)
    sky_to_sc = _euler323(
        math.radians(ra), math.pi / 2 - math.radians(dec), math.radians(roll) + math.pi
    )
    e1, e2, e3 = (math.radians(v) for v in _CAMERA_EULER[camera])
    return _euler323(e1, e2, e3) @ sky_to_sc


def _ccd_pixel_to_sky(
    col: npt.ArrayLike, row: npt.ArrayLike, sector: int, camera: int, ccd: int
) -> tuple[FloatArray, FloatArray]:
    """Physical model: 0-based FFI pixel (col, row) to (RA, Dec) in degrees (pure gnomonic)."""
    col = np.asarray(col, float)
    row = np.asarray(row, float)
    p0 = (col - SCIENCE_COLS[0] + 0.5) * _PIXEL_MM
    p1 = (row + 0.5) * _PIXEL_MM
    if ccd in (1, 2):
        p0, p1 = -p0, -p1
    x0, y0 = _CCD_ORIGIN_MM[ccd]
    fx, fy = p0 + x0, p1 + y0
    tan_theta = np.hypot(fx, fy) / _FOCAL_MM
    lng = np.arctan2(-fy, -fx)
    sin_lat = 1.0 / np.sqrt(1.0 + tan_theta**2)
    cos_lat = tan_theta * sin_lat
    cam = np.stack([cos_lat * np.cos(lng), cos_lat * np.sin(lng), sin_lat])
    sky = _sky_to_camera(sector, camera).T @ cam.reshape(3, -1)
    ra = np.degrees(np.arctan2(sky[1], sky[0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(sky[2], -1.0, 1.0)))
    return ra.reshape(col.shape), dec.reshape(col.shape)


def _boresight_pixel(ccd: int) -> tuple[float, float]:
    """0-based FFI pixel (col, row) of the camera boresight, seen from ``ccd`` (off-chip)."""
    x0, y0 = _CCD_ORIGIN_MM[ccd]
    p0, p1 = -x0, -y0
    if ccd in (1, 2):
        p0, p1 = -p0, -p1
    return p0 / _PIXEL_MM - 0.5 + SCIENCE_COLS[0], p1 / _PIXEL_MM - 0.5


def _build_wcs(sector: int, camera: int, ccd: int) -> WCS:
    """TAN WCS tangent at CRPIX, with the CD matrix of the physical model there."""
    c0, r0 = _CRPIX[0] - 1.0, _CRPIX[1] - 1.0
    ra0, dec0 = _ccd_pixel_to_sky(c0, r0, sector, camera, ccd)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [float(ra0), float(dec0)]
    wcs.wcs.crpix = list(_CRPIX)
    wcs.wcs.cd = np.eye(2)
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    h = 20.0
    ra, dec = _ccd_pixel_to_sky(
        np.array([c0 + h, c0 - h, c0, c0]), np.array([r0, r0, r0 + h, r0 - h]), sector, camera, ccd
    )
    iw = np.column_stack(wcs.wcs_world2pix(ra, dec, 1)) - np.asarray(_CRPIX)
    jac = np.column_stack([(iw[0] - iw[1]) / (2 * h), (iw[2] - iw[3]) / (2 * h)])
    wcs.wcs.cd = jac
    wcs.pixel_shape = (IMAGE_SHAPE[1], IMAGE_SHAPE[0])
    wcs.wcs.set()
    return wcs


def _scid(sector: int) -> int:
    if sector in _KNOWN_SCID:
        return _KNOWN_SCID[sector]
    keys = sorted(_KNOWN_SCID)
    if sector > keys[-1]:
        return int(round(_KNOWN_SCID[keys[-1]] + 2.2 * (sector - keys[-1])))
    return int(round(np.interp(sector, keys, [_KNOWN_SCID[k] for k in keys])))


# --------------------------------------------------------------------------------------------
# Variability models (vectorised: parameters of shape (m, 1), times of shape (1 or m, k))
# --------------------------------------------------------------------------------------------


def _smooth_box(x: FloatArray, ingress: FloatArray) -> FloatArray:
    """1 inside ``|x| < 1 - ingress``, smooth step to 0 at ``|x| = 1``."""
    v = np.clip((1.0 - np.abs(x)) / ingress, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)


def _phase(t: FloatArray, period: FloatArray, epoch: FloatArray) -> FloatArray:
    return np.mod((t - epoch) / period, 1.0)


def _model_ea(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    ph = _phase(t, p["period"], p["epoch"])
    x1 = np.minimum(ph, 1.0 - ph) / p["width"]
    x2 = np.abs(ph - 0.5) / p["width"]
    return (
        1.0
        - p["depth1"] * _smooth_box(x1, p["ingress"])
        - p["depth2"] * _smooth_box(x2, p["ingress"])
    )


def _shape_ew(ph: FloatArray, r: FloatArray) -> FloatArray:
    return np.cos(4 * np.pi * ph) + r * np.cos(2 * np.pi * ph)


def _model_ew(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    ph = _phase(t, p["period"], p["epoch"])
    return 1.0 - p["scale"] * _shape_ew(ph, p["asym"])


def _shape_harm(ph: FloatArray, h: FloatArray, psi: FloatArray) -> FloatArray:
    return np.sin(2 * np.pi * ph) + h * np.sin(4 * np.pi * ph + psi)


def _model_rot(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    ph = _phase(t, p["period"], p["epoch"])
    evol = 1.0 + p["evol"] * np.sin(2 * np.pi * (t - p["epoch"]) / p["evol_time"] + p["evol_phase"])
    return 1.0 + p["scale"] * evol * _shape_harm(ph, p["harm"], p["psi"])


def _model_dsct(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    ph = _phase(t, p["period"], p["epoch"])
    return 1.0 + p["scale"] * _shape_harm(ph, p["harm"], p["psi"])


def _model_transit(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    ph = _phase(t, p["period"], p["epoch"])
    x = np.minimum(ph, 1.0 - ph) / p["width"]
    return 1.0 - p["depth1"] * _smooth_box(x, p["ingress"])


def _model_flare(t: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
    # p["times"], p["amps"], p["tau"]: (m, F); t: (1 or m, k) -> (m, k)
    dt = t[:, :, None] - p["times"][:, None, :]
    tau = p["tau"][:, None, :]
    rise = np.exp(-0.5 * (dt / (tau / 8.0)) ** 2)
    decay = np.exp(-np.maximum(dt, 0.0) / tau)
    profile = np.where(dt < 0.0, rise, decay)
    return 1.0 + np.sum(p["amps"][:, None, :] * profile, axis=2)


_MODELS = {
    "EA": _model_ea,
    "EW": _model_ew,
    "ROT": _model_rot,
    "DSCT": _model_dsct,
    "TRANSIT": _model_transit,
    "FLARE": _model_flare,
}


def _peak_to_peak(shape_fn: Any, *params: FloatArray) -> FloatArray:
    """Peak-to-peak of a periodic shape per star, on a fine phase grid."""
    ph = np.linspace(0.0, 1.0, 2001)[None, :]
    s = shape_fn(ph, *(q[:, None] for q in params))
    return np.asarray(s.max(axis=1) - s.min(axis=1))


# --------------------------------------------------------------------------------------------
# PSF and saturation
# --------------------------------------------------------------------------------------------


def _pixel_integrated_1d(edges: FloatArray, sigma: FloatArray) -> FloatArray:
    """Fraction of a 1-D Gaussian in each pixel; ``edges`` (n, S+1) relative to the centre."""
    cdf = 0.5 * erf(edges / (math.sqrt(2.0) * sigma[:, None]))
    return np.diff(cdf, axis=1)


def _psf_stamps(
    x: FloatArray, y: FloatArray, sigma: FloatArray, size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
    """Pixel-integrated double-Gaussian stamps.

    Returns the 0-based first column and row of each stamp, shape (n,), and the stamps,
    shape (n, size, size) indexed [star, row, column], each summing to (almost) 1.
    """
    half = size // 2
    c0 = np.rint(x).astype(np.int64) - half
    r0 = np.rint(y).astype(np.int64) - half
    k = np.arange(size + 1, dtype=float) - 0.5
    ex = (c0[:, None] + k[None, :]) - x[:, None]
    ey = (r0[:, None] + k[None, :]) - y[:, None]
    s2 = sigma * _PSF_HALO_RATIO
    gx1, gy1 = _pixel_integrated_1d(ex, sigma), _pixel_integrated_1d(ey, sigma)
    gx2, gy2 = _pixel_integrated_1d(ex, s2), _pixel_integrated_1d(ey, s2)
    stamps = (1.0 - _PSF_HALO_FRACTION) * gy1[:, :, None] * gx1[:, None, :]
    stamps += _PSF_HALO_FRACTION * gy2[:, :, None] * gx2[:, None, :]
    return c0, r0, stamps


def _bleed_columns(image: npt.NDArray[np.floating[Any]], cap: float) -> None:
    """Clip science pixels above ``cap`` and bleed the excess up and down the column, in place.

    The excess of each column's saturated run is split in two halves that fill the pixels
    above and below the run to ``cap``; charge that reaches the end of the science rows is lost.
    """
    rows = SCIENCE_ROWS[1]
    sci = image[:rows]
    hot = sci > cap
    cols = np.flatnonzero(hot.any(axis=0))
    if cols.size == 0:
        return
    sub = sci[:, cols].astype(np.float64)
    hot = hot[:, cols]
    top = np.argmax(hot, axis=0)
    bottom = rows - 1 - np.argmax(hot[::-1], axis=0)
    ridx = np.arange(rows)[:, None]
    run = (ridx >= top[None, :]) & (ridx <= bottom[None, :])
    excess = np.maximum(np.sum(np.where(run, sub - cap, 0.0), axis=0), 0.0)
    sub[run] = cap
    half = excess / 2.0
    ncol = cols.size
    steps = np.arange(1, rows + 1)[None, :]
    colsel = np.arange(ncol)[:, None]
    for start, sign in ((top, -1), (bottom, 1)):
        ridx2 = start[:, None] + sign * steps  # (ncol, rows)
        valid = (ridx2 >= 0) & (ridx2 < rows)
        safe = np.clip(ridx2, 0, rows - 1)
        deficit = np.where(valid, np.maximum(cap - sub[safe, colsel], 0.0), np.inf)
        cum = np.cumsum(deficit, axis=1)
        nfill = np.sum(cum <= half[:, None], axis=1)
        fill = (steps - 1 < nfill[:, None]) & valid
        sub[safe[fill], np.broadcast_to(colsel, fill.shape)[fill]] = cap
        before = np.where(nfill > 0, cum[np.arange(ncol), np.maximum(nfill - 1, 0)], 0.0)
        rest = half - before
        nxt = nfill < rows
        nxt_idx = np.minimum(nfill, rows - 1)
        ok = nxt & valid[np.arange(ncol), nxt_idx] & (rest > 0)
        sub[safe[np.arange(ncol), nxt_idx][ok], np.arange(ncol)[ok]] += rest[ok]
    sci[:, cols] = sub.astype(sci.dtype)


# --------------------------------------------------------------------------------------------
# The simulated sector
# --------------------------------------------------------------------------------------------


@dataclass
class _BackgroundParams:
    level: float
    grad_x: float
    grad_y: float
    curvature: float
    corner_col: float
    corner_row: float
    scale_px: float
    start_amp: float
    start_tau: float
    end_amp: float
    end_tau: float
    bump_amp: float
    bump_day: float
    bump_width: float


@dataclass
class _ApertureCache:
    frac: FloatArray  # sum(w * psf)
    star_w2: FloatArray  # sum(w**2 * psf)
    area_sci_w2: FloatArray  # sum(w**2) over science pixels
    area_w2: FloatArray  # sum(w**2) over all pixels
    rn2_w2: FloatArray  # sum(w**2 * rn**2)


class SimulatedSector:
    """A deterministic simulated TESS sector of calibrated FFIs for one camera and CCD.

    Parameters
    ----------
    config : SimulationConfig
        All parameters. The same config always gives the same catalog, times, quality flags
        and pixels; every frame depends only on ``(config, cadence)``.

    Attributes
    ----------
    config : SimulationConfig
        The configuration.
    catalog : pandas.DataFrame
        One row per star: ``sim_id`` (int64, TIC-like), ``ra``, ``dec`` (deg), ``tmag``,
        ``x``, ``y`` (0-based column and row in the full image, from the WCS), ``var_class``
        (one of :data:`VARIABLE_CLASSES`), ``period`` (d, NaN for CONST and FLARE),
        ``amplitude`` (peak-to-peak of the relative flux model; 0 for CONST), ``epoch`` (BTJD;
        NaN for CONST), ``flux_e_s`` (total e-/s at relative flux 1) and ``saturated``.
    wcs : astropy.wcs.WCS
        TAN WCS of HDU 1 (0-based pixel convention when used with ``*_values`` methods).
    tstart, tstop : numpy.ndarray
        BTJD (TDB) start and stop of each cadence; ``tstop - tstart`` is the cadence.
    barycorr : numpy.ndarray
        Barycentric correction (d) of each cadence at the CCD centre.
    dquality : numpy.ndarray
        int32 DQUALITY per cadence: bit 32 on momentum dumps, bit 4096 on scattered light.

    Examples
    --------
    >>> sim = SimulatedSector(SimulationConfig(n_stars=50, n_cadences=3, seed=1))
    >>> len(sim.catalog), sim.tstart.shape, sim.dquality.dtype
    (50, (3,), dtype('int32'))
    >>> bool((sim.catalog.sim_id >= 900_000_000).all())
    True
    """

    config: SimulationConfig
    catalog: pd.DataFrame
    wcs: WCS
    tstart: FloatArray
    tstop: FloatArray
    barycorr: FloatArray
    dquality: npt.NDArray[np.int32]

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        cfg = config
        self._dt = cfg.cadence_s / 86400.0
        self.wcs = _build_wcs(cfg.sector, cfg.camera, cfg.ccd)
        self._rn_col = read_noise_per_column()
        self._t_eff = effective_exposure_s(cfg.cadence_s)
        self._n_read = n_readouts(cfg.cadence_s)
        self._init_times()
        self._init_background_params()
        self._init_quality_and_pointing()
        self._init_catalog()
        self._static_bkg: npt.NDArray[np.float32] | None = None
        self._scatter_pattern: npt.NDArray[np.float32] | None = None
        self._aperture_cache: dict[tuple[float, str], _ApertureCache] = {}
        self._names: list[str] | None = None

    # ---------------------------------------------------------------- construction helpers

    def _rng(self, *keys: int) -> np.random.Generator:
        cfg = self.config
        return np.random.default_rng([cfg.seed, cfg.sector, cfg.camera, cfg.ccd, *keys])

    def _init_times(self) -> None:
        cfg = self.config
        idx = np.arange(cfg.n_cadences)
        per_orbit = max(1, int(_ORBIT_DATA_D / self._dt))
        self._orbit = idx // per_orbit
        orbit_len = per_orbit * self._dt
        self._orbit_start = cfg.t_start_btjd + np.arange(self._orbit[-1] + 1) * (
            orbit_len + _ORBIT_GAP_D
        )
        self._orbit_end = self._orbit_start + orbit_len
        self._t_sc = cfg.t_start_btjd + idx * self._dt + self._orbit * _ORBIT_GAP_D
        ra_c, dec_c = self.wcs.all_pix2world([[_BTC_PIX[0], _BTC_PIX[1]]], 1)[0]
        self._centre = (float(ra_c), float(dec_c))
        # The correction varies smoothly (yearly): compute it on a 0.25 d grid and interpolate
        # (error < 1 ms) so that long 200 s sectors stay cheap to set up.
        tmid_sc = self._t_sc + self._dt / 2
        grid = np.arange(tmid_sc[0], tmid_sc[-1] + 0.5, 0.25)
        times = Time(grid + _BJDREFI, format="jd", scale="tdb")
        ltt = times.light_travel_time(
            SkyCoord(ra_c * u.deg, dec_c * u.deg, frame="icrs"),
            kind="barycentric",
            location=EarthLocation.from_geocentric(0.0, 0.0, 0.0, unit=u.m),
            ephemeris="builtin",
        )
        self.barycorr = np.interp(tmid_sc, grid, np.asarray(ltt.to_value(u.day), dtype=float))
        self.tstart = self._t_sc + self.barycorr
        self.tstop = self.tstart + self._dt

    def _init_background_params(self) -> None:
        rng = self._rng(1)
        level = rng.uniform(110.0, 140.0)
        grad = rng.uniform(8.0, 20.0)
        angle = rng.uniform(0.0, 2 * np.pi)
        corner = int(rng.integers(4))
        corner_col = float(SCIENCE_COLS[corner % 2])
        corner_row = float(SCIENCE_ROWS[corner // 2])
        self._bkg = _BackgroundParams(
            level=level,
            grad_x=grad * math.cos(angle),
            grad_y=grad * math.sin(angle),
            curvature=rng.uniform(0.0, 12.0),
            corner_col=corner_col,
            corner_row=corner_row,
            scale_px=rng.uniform(900.0, 1600.0),
            start_amp=rng.uniform(50.0, 90.0),
            start_tau=rng.uniform(0.3, 0.6),
            end_amp=rng.uniform(70.0, 130.0),
            end_tau=rng.uniform(0.5, 0.9),
            bump_amp=rng.uniform(10.0, 30.0),
            bump_day=rng.uniform(5.0, 8.0),
            bump_width=rng.uniform(0.3, 0.7),
        )
        b = self._bkg
        tm = self._t_sc + self._dt / 2
        since = tm - self._orbit_start[self._orbit]
        until = self._orbit_end[self._orbit] - tm
        self._scatter = (
            b.start_amp * np.exp(-since / b.start_tau)
            + b.end_amp * np.exp(-until / b.end_tau)
            + b.bump_amp * np.exp(-0.5 * ((since - b.bump_day) / b.bump_width) ** 2)
        )

    def _init_quality_and_pointing(self) -> None:
        cfg = self.config
        n = cfg.n_cadences
        t_end = self._t_sc[-1] + self._dt
        dumps = (
            cfg.t_start_btjd
            + _FIRST_DUMP_D
            + MOMENTUM_DUMP_INTERVAL_D
            * np.arange(
                max(0, int((t_end - cfg.t_start_btjd - _FIRST_DUMP_D) / MOMENTUM_DUMP_INTERVAL_D))
                + 1
            )
        )
        dumps = dumps[dumps < t_end]
        idx = np.searchsorted(self._t_sc, dumps, side="right") - 1
        ok = (idx >= 0) & (dumps < self._t_sc[np.maximum(idx, 0)] + self._dt)
        dump_cad = np.unique(idx[ok])
        quality = np.zeros(n, dtype=np.int32)
        quality[dump_cad] |= int(QualityFlags.MOMENTUM_DUMP)
        quality[self._scatter > SCATTER_FLAG_LEVEL] |= int(QualityFlags.SCATTERED_LIGHT)
        self.dquality = quality
        self._dump_cadences = dump_cad
        # Pointing: white jitter + drift since the last dump (or orbit start) + dump kicks.
        j = cfg.jitter_px
        white = self._rng(2).normal(0.0, j, size=(n, 2))
        kicks = self._rng(3).normal(0.0, 6.0 * j, size=(n, 2))
        direction = self._rng(4).normal(size=2)
        direction /= max(float(np.hypot(*direction)), 1e-12)
        tm = self._t_sc + self._dt / 2
        resets = np.concatenate([self._orbit_start, dumps])
        resets = np.sort(resets)
        last = resets[np.maximum(np.searchsorted(resets, tm, side="right") - 1, 0)]
        drift = (0.5 * j * np.maximum(tm - last, 0.0))[:, None] * direction[None, :]
        offsets = white + drift
        is_dump = np.zeros(n, dtype=bool)
        is_dump[dump_cad] = True
        offsets[is_dump] += kicks[is_dump]
        self._offsets = offsets

    def _init_catalog(self) -> None:
        cfg = self.config
        n = cfg.n_stars
        rng = self._rng(0)
        x = rng.uniform(SCIENCE_COLS[0], SCIENCE_COLS[1] - 1, n)
        y = rng.uniform(SCIENCE_ROWS[0], SCIENCE_ROWS[1] - 1, n)
        lo, hi = _TMAG_RANGE
        kk = _TMAG_SLOPE
        tmag = lo + np.log10(1.0 + rng.uniform(size=n) * (10 ** (kk * (hi - lo)) - 1.0)) / kk
        ra, dec = self.wcs.wcs_pix2world(x, y, 0)
        ra = np.asarray(ra, float) % 360.0
        dec = np.asarray(dec, float)
        x, y = (np.asarray(v, float) for v in self.wcs.wcs_world2pix(ra, dec, 0))
        flux = tmag_to_flux(tmag)
        # PSF width grows away from the camera boresight.
        bx, by = _boresight_pixel(cfg.ccd)
        corners = np.array(
            [
                [SCIENCE_COLS[0], SCIENCE_ROWS[0]],
                [SCIENCE_COLS[1], SCIENCE_ROWS[0]],
                [SCIENCE_COLS[0], SCIENCE_ROWS[1]],
                [SCIENCE_COLS[1], SCIENCE_ROWS[1]],
            ],
            float,
        )
        dmax = float(np.max(np.hypot(corners[:, 0] - bx, corners[:, 1] - by)))
        dist = np.hypot(x - bx, y - by)
        self._psf_sigma = _PSF_CORE_SIGMA * (1.0 + _PSF_FIELD_GROWTH * (dist / dmax) ** 2)
        self._x, self._y, self._flux = x, y, flux

        var_class = np.full(n, "CONST", dtype=object)
        period = np.full(n, np.nan)
        amplitude = np.zeros(n)
        epoch = np.full(n, np.nan)
        self._vars: dict[str, dict[str, FloatArray]] = {}
        self._var_index: dict[str, npt.NDArray[np.int64]] = {}
        n_var = int(round(cfg.variable_fraction * n))
        counts = self._class_counts(n_var)
        chosen = rng.permutation(n)[:n_var]
        t_ref = float(self.tstart[0])
        span = float(self.tstop[-1] - self.tstart[0])
        dt = self._dt
        start = 0
        for cls in _CLASS_SHARES:  # loop over the six classes, each vectorised over its stars
            m = counts[cls]
            idx = np.sort(chosen[start : start + m])
            start += m
            crng = self._rng(10 + VARIABLE_CLASSES.index(cls))
            params, per, amp, ep = self._draw_class(cls, m, crng, t_ref, span, dt)
            self._vars[cls] = params
            self._var_index[cls] = idx.astype(np.int64)
            var_class[idx] = cls
            period[idx] = per
            amplitude[idx] = amp
            epoch[idx] = ep

        peak = self._peak_fraction()
        static_bkg = self.background_at(x, y, None)
        saturated = flux * peak + static_bkg > SATURATION_E_S
        ids = (
            900_000_000
            + (16 * (cfg.sector - 1) + 4 * (cfg.camera - 1) + (cfg.ccd - 1)) * _MAX_STARS
            + np.arange(n, dtype=np.int64)
        )
        self.catalog = pd.DataFrame(
            {
                "sim_id": ids.astype(np.int64),
                "ra": ra,
                "dec": dec,
                "tmag": tmag,
                "x": x,
                "y": y,
                "var_class": pd.Series(var_class, dtype=str),
                "period": period,
                "amplitude": amplitude,
                "epoch": epoch,
                "flux_e_s": flux,
                "saturated": saturated,
            }
        )

    @staticmethod
    def _class_counts(n_var: int) -> dict[str, int]:
        shares = np.array(list(_CLASS_SHARES.values()))
        raw = shares * n_var
        counts = np.floor(raw).astype(int)
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[: n_var - counts.sum()]] += 1
        if n_var >= len(shares):
            while (counts == 0).any():  # at most a handful of iterations
                counts[np.argmax(counts)] -= 1
                counts[np.argmin(counts)] += 1
        return dict(zip(_CLASS_SHARES, (int(c) for c in counts), strict=True))

    @staticmethod
    def _periods(
        rng: np.random.Generator, m: int, lo: float, hi: float, span: float, dt: float
    ) -> FloatArray:
        """Log-uniform periods in the class range, at least 4 cadences, ~3 cycles in the span."""
        floor = 4.0 * dt
        plo, phi = max(lo, floor), min(hi, span / 3.0)
        if phi <= plo:
            phi = max(span / 3.0, 1.5 * floor)
            plo = max(floor, phi / 2.0)
        if phi <= plo:
            phi = plo * 1.5
        return np.exp(rng.uniform(math.log(plo), math.log(phi), m))

    def _draw_class(
        self, cls: str, m: int, rng: np.random.Generator, t_ref: float, span: float, dt: float
    ) -> tuple[dict[str, FloatArray], FloatArray, FloatArray, FloatArray]:
        def logu(a: float, b: float) -> FloatArray:
            return np.exp(rng.uniform(math.log(a), math.log(b), m))

        p: dict[str, FloatArray] = {}
        if cls == "FLARE":
            nfl = 4
            count = rng.integers(2, nfl + 1, m)
            times = t_ref + rng.uniform(0.05, 0.95, (m, nfl)) * span
            amps = np.exp(rng.uniform(math.log(0.03), math.log(0.6), (m, nfl)))
            amps[np.arange(nfl)[None, :] >= count[:, None]] = 0.0
            tau = rng.uniform(1.5, 4.0, (m, nfl)) * max(dt, 0.007)
            p.update(times=times, amps=amps, tau=tau)
            best = np.argmax(amps, axis=1) if m else np.zeros(0, dtype=int)
            amp = amps.max(axis=1) if m else np.zeros(0)
            ep = times[np.arange(m), best] if m else np.zeros(0)
            return p, np.full(m, np.nan), amp, ep
        ranges = {
            "EA": (0.5, 10.0),
            "EW": (0.25, 1.0),
            "ROT": (0.5, 15.0),
            "DSCT": (0.02, 0.2),
            "TRANSIT": (1.0, 10.0),
        }
        per = self._periods(rng, m, *ranges[cls], span, dt)
        ep = t_ref + rng.uniform(0.0, 1.0, m) * per
        p["period"], p["epoch"] = per, ep
        if cls == "EA":
            d1 = logu(0.05, 0.5)
            p["depth1"] = d1
            p["depth2"] = d1 * rng.uniform(0.05, 0.7, m)
            width = rng.uniform(0.02, 0.06, m)
            p["width"] = np.minimum(np.maximum(width, 1.5 * dt / per), 0.2)
            p["ingress"] = rng.uniform(0.4, 0.9, m)
            amp = d1
        elif cls == "TRANSIT":
            depth = logu(0.005, 0.03)
            dur = rng.uniform(1.5, 4.0, m) / 24.0
            p["depth1"] = depth
            p["width"] = np.minimum(np.maximum(dur / (2 * per), 1.5 * dt / per), 0.2)
            p["ingress"] = np.full(m, 0.15)
            amp = depth
        elif cls == "EW":
            a = rng.uniform(0.05, 0.4, m)
            asym = rng.uniform(0.0, 0.15, m)
            p["asym"] = asym
            p["scale"] = a / _peak_to_peak(_shape_ew, asym)
            amp = a
        else:  # ROT, DSCT
            a = logu(0.005, 0.05) if cls == "ROT" else logu(0.003, 0.03)
            harm = rng.uniform(0.0, 0.5 if cls == "ROT" else 0.35, m)
            psi = rng.uniform(0.0, 2 * np.pi, m)
            p["harm"], p["psi"] = harm, psi
            p["scale"] = a / _peak_to_peak(_shape_harm, harm, psi)
            if cls == "ROT":
                p["evol"] = rng.uniform(0.05, 0.25, m)
                p["evol_time"] = rng.uniform(1.5, 4.0, m) * max(span, 1.0)
                p["evol_phase"] = rng.uniform(0.0, 2 * np.pi, m)
            amp = a
        return p, per, amp, ep

    def _peak_fraction(self) -> FloatArray:
        """Largest pixel fraction of each star's PSF at its catalog position."""
        if self.config.n_stars == 0:
            return np.zeros(0)
        _, _, st = _psf_stamps(self._x, self._y, self._psf_sigma, 5)
        return np.asarray(st.reshape(st.shape[0], -1).max(axis=1))

    # ---------------------------------------------------------------- basic properties

    @property
    def n_stars(self) -> int:
        """Number of stars in the catalog."""
        return self.config.n_stars

    @property
    def n_cadences(self) -> int:
        """Number of cadences."""
        return self.config.n_cadences

    @property
    def tmid(self) -> FloatArray:
        """Mid-exposure BTJD of each cadence."""
        return (self.tstart + self.tstop) / 2.0

    @property
    def exposure_s(self) -> float:
        """Effective exposure per cadence in seconds (``cadence_s * DEADC``)."""
        return self._t_eff

    @property
    def n_readouts(self) -> int:
        """Reads per cadence that contribute read noise (``NREADOUT``)."""
        return self._n_read

    @property
    def momentum_dump_cadences(self) -> npt.NDArray[np.int64]:
        """Cadence indices flagged with DQUALITY bit 32."""
        return self._dump_cadences.copy()

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SimulatedSector(sector={c.sector}, camera={c.camera}, ccd={c.ccd}, "
            f"n_stars={c.n_stars}, n_cadences={c.n_cadences}, cadence_s={c.cadence_s}, "
            f"seed={c.seed})"
        )

    def _check_cadence(self, cadence: int) -> int:
        k = operator.index(cadence)
        if not 0 <= k < self.config.n_cadences:
            raise IndexError(f"cadence {k} out of range 0-{self.config.n_cadences - 1}")
        return k

    # ---------------------------------------------------------------- truth

    def pointing_offset(self, cadence: int) -> tuple[float, float]:
        """True pointing offset (dx, dy) in pixels applied to every star of a frame.

        Parameters
        ----------
        cadence : int
            Cadence index.

        Returns
        -------
        tuple of float
            Column and row offset.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=2, jitter_px=0.0))
        >>> sim.pointing_offset(1)
        (0.0, 0.0)
        """
        k = self._check_cadence(cadence)
        return float(self._offsets[k, 0]), float(self._offsets[k, 1])

    def scattered_light(self, cadence: int | None = None) -> FloatArray | float:
        """Scattered-light level (e-/s/px at its brightest corner) of a cadence, or all.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=5))
        >>> sim.scattered_light().shape
        (5,)
        """
        if cadence is None:
            return self._scatter.copy()
        return float(self._scatter[self._check_cadence(cadence)])

    def _sub_times(self, cadences: npt.NDArray[np.int64]) -> FloatArray:
        frac = (np.arange(_N_SUBSAMPLES) + 0.5) / _N_SUBSAMPLES
        return self.tstart[cadences][:, None] + frac[None, :] * self._dt

    def _relative_flux_at(self, cadences: npt.NDArray[np.int64]) -> FloatArray:
        """Exposure-averaged relative flux, shape (len(cadences), n_stars)."""
        out = np.ones((cadences.size, self.config.n_stars))
        t = self._sub_times(cadences).reshape(1, -1)  # (1, C * S)
        for cls, params in self._vars.items():  # one vectorised evaluation per class
            idx = self._var_index[cls]
            if idx.size == 0:
                continue
            shaped = {k: (v[:, None] if v.ndim == 1 else v) for k, v in params.items()}
            f = _MODELS[cls](t, shaped)  # (m, C * S)
            out[:, idx] = f.reshape(idx.size, cadences.size, _N_SUBSAMPLES).mean(axis=2).T
        return out

    def relative_flux(self, cadence: int) -> FloatArray:
        """Truth relative flux of every star at a cadence (mean or quiescent level ~1).

        Averaged over the exposure, i.e. exactly what :meth:`render` puts in the image.

        Parameters
        ----------
        cadence : int
            Cadence index.

        Returns
        -------
        numpy.ndarray
            Shape (n_stars,). Multiply by ``catalog.flux_e_s`` for e-/s.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=100, n_cadences=5))
        >>> rel = sim.relative_flux(0)
        >>> rel.shape, bool(((rel > 0.4) & (rel < 3)).all())
        ((100,), True)
        """
        k = self._check_cadence(cadence)
        return self._relative_flux_at(np.array([k]))[0]

    def relative_flux_all(self, chunk: int = 256) -> FloatArray:
        """Truth relative flux of every star at every cadence, shape (n_cadences, n_stars).

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=30, n_cadences=6))
        >>> sim.relative_flux_all().shape
        (6, 30)
        """
        n = self.config.n_cadences
        parts = [
            self._relative_flux_at(np.arange(i, min(i + chunk, n))) for i in range(0, n, chunk)
        ]
        return np.concatenate(parts, axis=0)

    # ---------------------------------------------------------------- background

    def _static_background(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if self._static_bkg is None or self._scatter_pattern is None:
            rows = np.arange(IMAGE_SHAPE[0], dtype=float)[:, None]
            cols = np.arange(IMAGE_SHAPE[1], dtype=float)[None, :]
            mask = science_mask()
            static = self._background_static_at(cols, rows)
            pattern = self._scatter_pattern_at(cols, rows)
            self._static_bkg = np.where(mask, static, 0.0).astype(np.float32)
            self._scatter_pattern = np.where(mask, pattern, 0.0).astype(np.float32)
        return self._static_bkg, self._scatter_pattern

    def _background_static_at(self, x: FloatArray, y: FloatArray) -> FloatArray:
        b = self._bkg
        uu = (x - 1067.5) / 1024.0
        vv = (y - 1023.5) / 1024.0
        return b.level + b.grad_x * uu + b.grad_y * vv + b.curvature * (uu**2 + vv**2) / 2.0

    def _scatter_pattern_at(self, x: FloatArray, y: FloatArray) -> FloatArray:
        b = self._bkg
        return np.exp(-np.hypot(x - b.corner_col, y - b.corner_row) / b.scale_px)

    def background_at(self, x: npt.ArrayLike, y: npt.ArrayLike, cadence: int | None) -> FloatArray:
        """Noiseless background (e-/s/px) at 0-based positions (no scattered light if no cadence).

        Parameters
        ----------
        x, y : array_like
            Column and row (broadcast together).
        cadence : int or None
            Cadence index, or None for the static part only.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=2))
        >>> bool(80 < sim.background_at(1000.0, 1000.0, None) < 200)
        True
        """
        xa, ya = np.asarray(x, float), np.asarray(y, float)
        val = self._background_static_at(xa, ya)
        if cadence is not None:
            val = val + self._scatter[self._check_cadence(cadence)] * self._scatter_pattern_at(
                xa, ya
            )
        return np.asarray(val)

    def background(self, cadence: int) -> npt.NDArray[np.float32]:
        """Noiseless background image (e-/s/px, 0 outside the science area) of a cadence.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=2))
        >>> b = sim.background(0)
        >>> b.shape, float(b[0, 0]), bool(b[100, 100] > 50)
        ((2078, 2136), 0.0, True)
        """
        k = self._check_cadence(cadence)
        static, pattern = self._static_background()
        return static + np.float32(self._scatter[k]) * pattern

    # ---------------------------------------------------------------- rendering

    def model_image(self, cadence: int) -> npt.NDArray[np.float32]:
        """Noiseless image (background + stars, saturated and bled) of a cadence in e-/s.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=10, n_cadences=2))
        >>> m = sim.model_image(1)
        >>> m.dtype, float(m[:, :44].max())
        (dtype('float32'), 0.0)
        """
        k = self._check_cadence(cadence)
        model = self.background(k)
        n = self.config.n_stars
        if n:
            dx, dy = self._offsets[k]
            amp = self._flux * self._relative_flux_at(np.array([k]))[0]
            xs, ys = self._x + dx, self._y + dy
            bright = self.catalog["tmag"].to_numpy() < _BRIGHT_STAMP_TMAG
            flat_parts: list[npt.NDArray[np.int64]] = []
            weight_parts: list[FloatArray] = []
            width = IMAGE_SHAPE[1]
            for sel, size in ((bright, 19), (~bright, 11)):  # two stamp sizes, each vectorised
                if not sel.any():
                    continue
                c0, r0, st = _psf_stamps(xs[sel], ys[sel], self._psf_sigma[sel], size)
                kk = np.arange(size)
                rows = r0[:, None] + kk[None, :]
                cols = c0[:, None] + kk[None, :]
                row_ok = (rows >= SCIENCE_ROWS[0]) & (rows < SCIENCE_ROWS[1])
                col_ok = (cols >= SCIENCE_COLS[0]) & (cols < SCIENCE_COLS[1])
                ok = row_ok[:, :, None] & col_ok[:, None, :]
                flat = rows[:, :, None] * width + cols[:, None, :]
                flat_parts.append(flat[ok])
                weight_parts.append((st * amp[sel][:, None, None])[ok])
            stars = np.bincount(
                np.concatenate(flat_parts),
                weights=np.concatenate(weight_parts),
                minlength=model.size,
            )
            model += stars.reshape(IMAGE_SHAPE).astype(np.float32)
            _bleed_columns(model, SATURATION_E_S)
        return model

    def render(
        self, cadence: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], fits.Header]:
        """Render one calibrated FFI.

        Parameters
        ----------
        cadence : int
            Cadence index; frames are independent and can be rendered in any order.

        Returns
        -------
        image : numpy.ndarray
            float32 (2078, 2136) in e-/s: model plus Gaussian noise.
        uncertainty : numpy.ndarray
            float32 (2078, 2136): the one-sigma noise of each pixel (:func:`pixel_sigma`).
        header : astropy.io.fits.Header
            The HDU 1 header (times, DQUALITY, gains, read noise, WCS ...).

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=5, n_cadences=2))
        >>> img, unc, hdr = sim.render(1)
        >>> unc.dtype, bool((unc > 0).all()), hdr["EXTNAME"]
        (dtype('float32'), True, 'CAMERA.CCD 1.1 cal')
        """
        k = self._check_cadence(cadence)
        model = self.model_image(k)
        var = model * np.float32(self._t_eff)
        var += (self._n_read * self._rn_col**2).astype(np.float32)[None, :]
        sigma = np.sqrt(np.maximum(var, 0.0, out=var), out=var)
        sigma /= np.float32(self._t_eff)
        noise = self._rng(5, k).standard_normal(IMAGE_SHAPE, dtype=np.float32)
        noise *= sigma
        noise += model
        return noise, sigma, self.image_header(k)

    # ---------------------------------------------------------------- headers and files

    def _utc(self, btjd: float, precision: int = 3) -> Time:
        t = Time(btjd + _BJDREFI, format="jd", scale="tdb").utc
        t.precision = precision
        return t

    def _creation_date(self) -> str:
        return str(self._utc(float(self.tstop[-1]) + 20.0).strftime("%Y-%m-%d"))

    def primary_header(self, cadence: int) -> fits.Header:
        """HDU 0 header of the FFI file of a cadence.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=1))
        >>> h = sim.primary_header(0)
        >>> h["TELESCOP"], h["SECTOR"], h["CAMERA"], h["CCD"]
        ('TESS', 1, 1, 1)
        """
        k = self._check_cadence(cadence)
        cfg = self.config
        ra_nom, dec_nom, roll_nom = _pointing(cfg.sector)
        h = fits.Header()
        cards: list[tuple[str, Any, str]] = [
            ("EXTEND", True, "file contains extensions"),
            ("NEXTEND", 2, "number of standard extensions"),
            ("SIMDATA", True, "file is based on simulated data"),
            ("ORIGIN", "tess-ffi simulation", "institution responsible for creating this file"),
            ("DATE", self._creation_date(), "file creation date."),
            ("TSTART", float(self.tstart[k]), "observation start time in BTJD"),
            ("TSTOP", float(self.tstop[k]), "observation stop time in BTJD"),
            (
                "DATE-OBS",
                self._utc(float(self.tstart[k])).isot + "Z",
                "TSTART as UTC calendar date",
            ),
            ("DATE-END", self._utc(float(self.tstop[k])).isot + "Z", "TSTOP as UTC calendar date"),
            (
                "CREATOR",
                "tess_ffi.shared.simulation",
                "pipeline job and program used to produce this file",
            ),
            ("PROCVER", "tess-ffi-sim-1.0", "SW version"),
            ("FILEVER", "1.0", "file format version"),
            ("TIMVERSN", "OGIP/93-003", "OGIP memo number for file format"),
            ("TELESCOP", "TESS", "telescope"),
            ("INSTRUME", "TESS Photometer", "detector type"),
            ("DATA_REL", 0, "data release version number"),
            ("SCCONFIG", _scid(cfg.sector), "spacecraft configuration ID"),
            ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
            ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
            ("CRMITEN", True, "spacecraft cosmic ray mitigation enabled"),
            ("CRBLKSZ", 10, "[exposures] s/c cosmic ray mitigation block size"),
            ("CRSPOC", False, "SPOC cosmic ray cleaning enabled"),
            ("SECTOR", cfg.sector, "Observing sector"),
            ("CAMERA", cfg.camera, "Camera number"),
            ("CCD", cfg.ccd, "CCD chip number"),
            ("RA_NOM", ra_nom, "[deg] RA of spacecraft boresight"),
            ("DEC_NOM", dec_nom, "[deg] DEC of spacecraft boresight"),
            ("ROLL_NOM", roll_nom, "[deg] roll angle of spacecraft"),
            ("SIMSEED", cfg.seed, "simulation seed"),
        ]
        _fill_header(h, cards)
        return h

    def _wcs_cards(self) -> list[tuple[str, Any, str]]:
        w = self.wcs.wcs
        cd = w.cd
        return [
            ("RADESYS", "ICRS", "reference frame of celestial coordinates"),
            ("EQUINOX", 2000.0, "equinox of celestial coordinate system"),
            ("WCSAXES", 2, "number of WCS axes"),
            ("CTYPE1", "RA---TAN", "Gnomonic projection"),
            ("CTYPE2", "DEC--TAN", "Gnomonic projection"),
            ("CRVAL1", float(w.crval[0]), "RA at CRPIX1, CRPIX2"),
            ("CRVAL2", float(w.crval[1]), "DEC at CRPIX1, CRPIX2"),
            ("CRPIX1", float(w.crpix[0]), "X reference pixel"),
            ("CRPIX2", float(w.crpix[1]), "Y reference pixel"),
            ("CD1_1", float(cd[0, 0]), "Transformation matrix"),
            ("CD1_2", float(cd[0, 1]), "Transformation matrix"),
            ("CD2_1", float(cd[1, 0]), "Transformation matrix"),
            ("CD2_2", float(cd[1, 1]), "Transformation matrix"),
            ("WCSNAMEP", "PHYSICAL", "name of world coordinate system alternate P"),
            ("WCSAXESP", 2, "number of WCS physical axes"),
            ("CTYPE1P", "RAWX", "physical WCS axis 1 type CCD col"),
            ("CUNIT1P", "PIXEL", "physical WCS axis 1 unit"),
            ("CRPIX1P", 1, "reference CCD column"),
            ("CRVAL1P", 1, "value at reference CCD column"),
            ("CDELT1P", 1.0, "physical WCS axis 1 step"),
            ("CTYPE2P", "RAWY", "physical WCS axis 2 type CCD row"),
            ("CUNIT2P", "PIXEL", "physical WCS axis 2 units"),
            ("CRPIX2P", 1, "reference CCD row"),
            ("CRVAL2P", 1, "value at reference CCD row"),
            ("CDELT2P", 1.0, "physical WCS axis 2 step"),
        ]

    def image_header(self, cadence: int, kind: Literal["cal", "uncert"] = "cal") -> fits.Header:
        """Header of HDU 1 (``kind="cal"``) or HDU 2 (``"uncert"``) of a cadence.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=3, cadence_s=600.0))
        >>> h = sim.image_header(2)
        >>> h["NUM_FRM"], h["NREADOUT"], round(h["EXPOSURE"] * 86400, 1), h["BJDREFI"]
        (300, 240, 475.2, 2457000)
        """
        k = self._check_cadence(cadence)
        cfg = self.config
        ra_nom, dec_nom, roll_nom = _pointing(cfg.sector)
        dx, dy = self._offsets[k]
        telapse = float(self.tstop[k] - self.tstart[k])
        date_obs = str(self._utc(float(self.tstart[k])).isot)
        date_end = str(self._utc(float(self.tstop[k])).isot)
        exposure_d = self._t_eff / 86400.0
        h = fits.Header()
        cards: list[tuple[str, Any, str]] = [
            ("INHERIT", True, "inherit the primary header"),
            ("EXTNAME", f"CAMERA.CCD {cfg.camera}.{cfg.ccd} {kind}", "extension name"),
            ("EXTVER", 1, "extension version number (not format version)"),
            ("SIMDATA", True, "file is based on simulated data"),
            ("TELESCOP", "TESS", "telescope"),
            ("INSTRUME", "TESS Photometer", "detector type"),
            ("CAMERA", cfg.camera, "Camera number"),
            ("CCD", cfg.ccd, "CCD chip number"),
            ("EXPOSURE", exposure_d, "[d] time on source"),
            ("TIMEREF", "SOLARSYSTEM", "barycentric correction applied to times"),
            ("TASSIGN", "SPACECRAFT", "where time is assigned"),
            ("TIMESYS", "TDB", "time system is Barycentric Dynamical Time (TDB)"),
            ("BJDREFI", _BJDREFI, "integer part of BTJD reference date"),
            ("BJDREFF", 0.0, "fraction of the day in BTJD reference date"),
            ("TIMEUNIT", "d", "time unit for TIME, TSTART and TSTOP"),
            ("TELAPSE", telapse, "[d] TSTOP - TSTART"),
            ("LIVETIME", telapse * DEADC, "[d] TELAPSE multiplied by DEADC"),
            ("TSTART", float(self.tstart[k]), "observation start time in BTJD"),
            ("TSTOP", float(self.tstop[k]), "observation stop time in BTJD"),
            ("DATE-OBS", date_obs + "Z", "TSTART as UTC calendar date"),
            ("DATE-END", date_end + "Z", "TSTOP as UTC calendar date"),
            (
                "MJD-OBS",
                Time(date_obs, format="isot", scale="utc").mjd,
                "[d] DATE-OBS as MJD (UTC)",
            ),
            (
                "MJD-END",
                Time(date_end, format="isot", scale="utc").mjd,
                "[d] DATE-END as MJD (UTC)",
            ),
            ("DEADC", DEADC, "deadtime correction"),
            ("TIMEPIXR", 0.5, "bin time beginning=0 middle=0.5 end=1"),
            ("TIERRELA", 1.16e-05, "[d] relative time error"),
            ("BTC_PIX1", _BTC_PIX[0], "reference col for barycentric time correction"),
            ("BTC_PIX2", _BTC_PIX[1], "reference row for barycentric time correction"),
            ("BARYCORR", float(self.barycorr[k]), "[d] barycentric time correction"),
            ("INT_TIME", INT_TIME_S, "[s] photon accumulation time per frame"),
            ("READTIME", READ_TIME_S, "[s] readout time per frame"),
            ("FRAMETIM", FRAME_TIME_S, "[s] frame time (INT_TIME + READTIME)"),
            ("NUM_FRM", n_frames(cfg.cadence_s), "number of frames per time stamp"),
            ("TIMEDEL", self._dt, "[d] time resolution of data"),
            ("BACKAPP", False, "background is subtracted"),
            ("DEADAPP", True, "deadtime applied"),
            ("VIGNAPP", True, "vignetting or collimator correction applied"),
        ]
        for i, letter in enumerate("ABCD"):
            cards.append((f"GAIN{letter}", GAINS[i], f"[electrons/count] CCD output {letter} gain"))
        for i, letter in enumerate("ABCD"):
            cards.append(
                (f"READNOI{letter}", READ_NOISE_E[i], f"[electrons] read noise CCD output {letter}")
            )
        cards += [
            ("NREADOUT", self._n_read, "number of read per cadence"),
            ("FXDOFF", 3355400, "compression fixed offset"),
        ]
        cards += _COLLATERAL_CARDS
        cards += self._wcs_cards()
        cards += [
            ("RA_NOM", ra_nom, "[deg] RA of spacecraft boresight"),
            ("DEC_NOM", dec_nom, "[deg] DEC of spacecraft boresight"),
            ("ROLL_NOM", roll_nom, "[deg] roll angle of spacecraft"),
            ("DQUALITY", int(self.dquality[k]), "data quality flags"),
            ("IMAGTYPE", kind, "FFI image type: raw, cal, uncert"),
            ("BUNIT", "electrons/s", "physical units of image"),
            ("SIMCADN", k, "simulation cadence index"),
            ("SIMDX", float(dx), "[pix] simulated pointing offset, column"),
            ("SIMDY", float(dy), "[pix] simulated pointing offset, row"),
            ("SIMSCAT", float(self._scatter[k]), "[e-/s] simulated scattered light level"),
        ]
        _fill_header(h, cards)
        return h

    def ffi_bytes(self, cadence: int) -> bytes:
        """A complete calibrated FFI FITS file (HDU 0 header, HDU 1 image, HDU 2 uncertainty).

        Parameters
        ----------
        cadence : int
            Cadence index.

        Returns
        -------
        bytes
            The file content (about 35 MB), byte-identical for the same config and cadence.

        Examples
        --------
        >>> import io
        >>> from astropy.io import fits
        >>> sim = SimulatedSector(SimulationConfig(n_stars=5, n_cadences=1))
        >>> with fits.open(io.BytesIO(sim.ffi_bytes(0))) as hdul:
        ...     [h.name for h in hdul], hdul[1].data.dtype.name
        (['PRIMARY', 'CAMERA.CCD 1.1 cal', 'CAMERA.CCD 1.1 uncert'], 'float32')
        """
        k = self._check_cadence(cadence)
        image, sigma, header = self.render(k)
        hdus = fits.HDUList(
            [
                fits.PrimaryHDU(header=self.primary_header(k)),
                fits.ImageHDU(data=image, header=header),
                fits.ImageHDU(data=sigma, header=self.image_header(k, "uncert")),
            ]
        )
        buf = io.BytesIO()
        hdus.writeto(buf, output_verify="exception")
        return buf.getvalue()

    def _all_names(self) -> list[str]:
        if self._names is None:
            cfg = self.config
            t = Time(self._t_sc + _BJDREFI, format="jd", scale="tdb").utc
            t.precision = 0
            stamps = np.atleast_1d(t.yday)
            scid = _scid(cfg.sector)
            self._names = [
                f"tess{s[0:4]}{s[5:8]}{s[9:11]}{s[12:14]}{s[15:17]}-s{cfg.sector:04d}-{cfg.camera}-{cfg.ccd}-{scid:04d}-s_ffic.fits"
                for s in stamps
            ]
        return self._names

    def ffi_filename(self, cadence: int) -> str:
        """Real-style file name of a cadence's calibrated FFI.

        The time stamp is the UTC start of the cadence on the spacecraft clock (TSTART minus
        BARYCORR), the same for every camera and CCD of a cadence, as in real data.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=2))
        >>> bool(FFI_NAME_RE.match(sim.ffi_filename(1)))
        True
        """
        return self._all_names()[self._check_cadence(cadence)]

    def ffi_filenames(self) -> list[str]:
        """File names of all cadences, in cadence order.

        Examples
        --------
        >>> len(SimulatedSector(SimulationConfig(n_stars=0, n_cadences=3)).ffi_filenames())
        3
        """
        return list(self._all_names())

    def cadence_from_filename(self, name: str) -> int:
        """Cadence index of one of this sector's file names (a path is fine).

        Raises
        ------
        KeyError
            If the name does not belong to this simulated sector.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=0, n_cadences=3))
        >>> sim.cadence_from_filename(sim.ffi_filename(2))
        2
        """
        base = name.rsplit("/", 1)[-1]
        try:
            return self._all_names().index(base)
        except ValueError:
            raise KeyError(f"{base!r} is not a file of {self!r}") from None

    # ---------------------------------------------------------------- expected photometry

    def _aperture(self, radius: float, method: str) -> _ApertureCache:
        key = (float(radius), method)
        if key in self._aperture_cache:
            return self._aperture_cache[key]
        if method not in ("exact", "center"):
            raise ValueError(f"method must be 'exact' or 'center', got {method!r}")
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        n = self.config.n_stars
        size = 2 * int(math.ceil(radius + 1.0)) + 1
        nsub = 10 if method == "exact" else 1
        sub = (np.arange(nsub) + 0.5) / nsub - 0.5 if nsub > 1 else np.zeros(1)
        res = {k: np.zeros(n) for k in ("frac", "star_w2", "area_sci_w2", "area_w2", "rn2_w2")}
        chunk = 2000
        for s in range(0, n, chunk):  # chunks of stars keep memory bounded; each is vectorised
            sl = slice(s, min(s + chunk, n))
            x, y = self._x[sl], self._y[sl]
            c0, r0, st = _psf_stamps(x, y, self._psf_sigma[sl], size)
            kk = np.arange(size)
            cols = c0[:, None] + kk[None, :]
            rows = r0[:, None] + kk[None, :]
            ddx = cols[:, :, None] - x[:, None, None] + sub[None, None, :]  # (m, S, nsub)
            ddy = rows[:, :, None] - y[:, None, None] + sub[None, None, :]
            inside = (
                ddy[:, :, None, :, None] ** 2 + ddx[:, None, :, None, :] ** 2 <= radius**2
            )  # (m, S, S, nsub, nsub)
            w = inside.mean(axis=(3, 4))
            row_ok = (rows >= SCIENCE_ROWS[0]) & (rows < SCIENCE_ROWS[1])
            col_ok = (cols >= SCIENCE_COLS[0]) & (cols < SCIENCE_COLS[1])
            sci = row_ok[:, :, None] & col_ok[:, None, :]
            in_img = ((rows >= 0) & (rows < IMAGE_SHAPE[0]))[:, :, None] & (
                (cols >= 0) & (cols < IMAGE_SHAPE[1])
            )[:, None, :]
            w = np.where(in_img, w, 0.0)
            psf = np.where(sci, st, 0.0)
            w2 = w * w
            rn2 = self._rn_col[np.clip(cols, 0, IMAGE_SHAPE[1] - 1)] ** 2
            res["frac"][sl] = np.sum(w * psf, axis=(1, 2))
            res["star_w2"][sl] = np.sum(w2 * psf, axis=(1, 2))
            res["area_sci_w2"][sl] = np.sum(np.where(sci, w2, 0.0), axis=(1, 2))
            res["area_w2"][sl] = np.sum(w2, axis=(1, 2))
            res["rn2_w2"][sl] = np.sum(w2 * rn2[:, None, :], axis=(1, 2))
        cache = _ApertureCache(**res)
        self._aperture_cache[key] = cache
        return cache

    def _cadence_array(self, cadence: int | Sequence[int] | None) -> npt.NDArray[np.int64]:
        if cadence is None:
            return np.arange(self.config.n_cadences)
        if isinstance(cadence, (int, np.integer)):
            return np.array([self._check_cadence(cadence)])
        return np.array([self._check_cadence(c) for c in cadence], dtype=np.int64)

    def aperture_fraction(
        self, radius: float, method: Literal["exact", "center"] = "exact"
    ) -> FloatArray:
        """Fraction of each star's flux inside a circular aperture centred on its catalog position.

        Parameters
        ----------
        radius : float
            Aperture radius in pixels.
        method : {"exact", "center"}
            Pixel weights: overlap area of pixel and circle (10x10 sub-sampling, as
            photutils' ``exact``), or 1 for pixels whose centre is inside.

        Returns
        -------
        numpy.ndarray
            Shape (n_stars,); light falling off the science area counts as lost.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=20, n_cadences=1))
        >>> f = sim.aperture_fraction(3.0)
        >>> bool(((f > 0.3) & (f <= 1.0)).all())
        True
        """
        return self._aperture(radius, method).frac.copy()

    def expected_aperture_flux(
        self,
        radius: float,
        cadence: int | Sequence[int] | None = None,
        *,
        method: Literal["exact", "center"] = "exact",
        include_variability: bool = True,
    ) -> FloatArray:
        """Expected background-subtracted aperture sum (e-/s) of every star, zero jitter.

        Returns shape (n_stars,) for an int ``cadence``, else (n_selected_cadences, n_stars).

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=8, n_cadences=4))
        >>> sim.expected_aperture_flux(2.0).shape, sim.expected_aperture_flux(2.0, 1).shape
        ((4, 8), (8,))
        """
        ap = self._aperture(radius, method)
        cads = self._cadence_array(cadence)
        rel = (
            self._relative_flux_at(cads)
            if include_variability
            else np.ones((cads.size, self.n_stars))
        )
        out = rel * (self._flux * ap.frac)[None, :]
        return out[0] if isinstance(cadence, (int, np.integer)) else out

    def expected_noise(
        self,
        radius: float,
        cadence: int | Sequence[int] | None = None,
        *,
        method: Literal["exact", "center"] = "exact",
        include_variability: bool = True,
    ) -> FloatArray:
        """Expected one-sigma noise (e-/s) of each star's circular-aperture sum.

        Photon noise of the star and of the (time-variable) background plus read noise,
        with the model of :func:`pixel_sigma`: ``sqrt(sum_p w_p**2 * (S_p * T + NREADOUT *
        rn_p**2)) / T`` over aperture pixels ``p`` with weights ``w_p``. The star is taken at
        its catalog position (no jitter), alone (no neighbours) and not saturated; the error of
        a background estimate is not included.

        Parameters
        ----------
        radius : float
            Aperture radius in pixels.
        cadence : int, sequence of int or None
            One cadence (result shape (n_stars,)), several, or all (None; shape
            (n_cadences, n_stars)).
        method : {"exact", "center"}
            Pixel weights, as in :meth:`aperture_fraction`.
        include_variability : bool
            Scale the star's photon noise with its truth relative flux.

        Returns
        -------
        numpy.ndarray
            Noise in e-/s.

        Examples
        --------
        >>> sim = SimulatedSector(SimulationConfig(n_stars=10, n_cadences=3))
        >>> sig = sim.expected_noise(2.5, 0)
        >>> sig.shape, bool((sig > 0).all())
        ((10,), True)
        """
        ap = self._aperture(radius, method)
        cads = self._cadence_array(cadence)
        rel = (
            self._relative_flux_at(cads)
            if include_variability
            else np.ones((cads.size, self.n_stars))
        )
        static = self._background_static_at(self._x, self._y)
        pattern = self._scatter_pattern_at(self._x, self._y)
        bkg = static[None, :] + self._scatter[cads][:, None] * pattern[None, :]
        t = self._t_eff
        var = t * (rel * (self._flux * ap.star_w2)[None, :] + bkg * ap.area_sci_w2[None, :])
        var = var + self._n_read * ap.rn2_w2[None, :]
        out = np.sqrt(var) / t
        return out[0] if isinstance(cadence, (int, np.integer)) else out
