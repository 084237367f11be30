"""Quality bits carried by every photometric measurement.

The low 16 bits are the TESS ``DQUALITY`` bits of the frame, copied unchanged (see the TESS
Science Data Products Description, table 28). Bits 20-24 are this pipeline's own, set per
star and per frame by the photometer; bits 25-26 are set by the aggregator's light-curve
cleaning (:data:`CLEANING_BITS`).

Examples
--------
>>> from tess_ffi.shared.quality import QualityFlags, is_good
>>> int(QualityFlags.EDGE | QualityFlags.SATURATED)
3145728
>>> is_good(0), is_good(int(QualityFlags.MOMENTUM_DUMP))
(True, False)
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

__all__ = [
    "QualityFlags",
    "TESS_DQUALITY_MASK",
    "DEFAULT_BAD_BITS",
    "SPOC_DEFAULT_BITMASK",
    "SATURATION_E_S",
    "CLEANING_BITS",
    "is_good",
    "good_mask",
]


class QualityFlags(enum.IntFlag):
    """Bit flags of ``photometry.quality``."""

    # TESS DQUALITY bits (frame level), as SPOC defines them.
    ATTITUDE_TWEAK = 1
    SAFE_MODE = 2
    COARSE_POINT = 4
    EARTH_POINT = 8
    ARGABRIGHTENING = 16
    MOMENTUM_DUMP = 32
    APERTURE_COSMIC = 64
    MANUAL_EXCLUDE = 128
    DISCONTINUITY = 256
    IMPULSIVE_OUTLIER = 512
    COLLATERAL_COSMIC = 1024
    STRAYLIGHT = 2048
    SCATTERED_LIGHT = 4096
    PLANET_SEARCH_EXCLUDE = 8192
    BAD_CALIBRATION = 16384
    INSUFFICIENT_TARGETS = 32768
    # This pipeline's own bits (star level).
    EDGE = 1 << 20
    SATURATED = 1 << 21
    NEGATIVE_FLUX = 1 << 22
    OUTSIDE = 1 << 23
    CONTAMINATED = 1 << 24
    # Set by the aggregator's light-curve cleaning (recomputed whenever it runs again).
    OUTLIER = 1 << 25
    BAD_EPOCH = 1 << 26


TESS_DQUALITY_MASK = 0xFFFF

#: A pixel's saturation level in a calibrated FFI, e-/s: a full well of about 1.3e5 e- per
#: 1.98 s exposure (Vanderspek et al. 2018; stars brighter than Tmag ~6.8 saturate).
SATURATION_E_S = 1.3e5 / 1.98

#: SPOC's recommended mask of "definitely bad" cadences (lightkurve's default): attitude
#: tweak, safe mode, coarse and Earth point, Argabrightening, momentum dump, manual exclude,
#: impulsive outlier, bad calibration. Scattered light (4096) and straylight (2048) are flags
#: of caution, not exclusion.
SPOC_DEFAULT_BITMASK = int(
    QualityFlags.ATTITUDE_TWEAK
    | QualityFlags.SAFE_MODE
    | QualityFlags.COARSE_POINT
    | QualityFlags.EARTH_POINT
    | QualityFlags.ARGABRIGHTENING
    | QualityFlags.MOMENTUM_DUMP
    | QualityFlags.MANUAL_EXCLUDE
    | QualityFlags.IMPULSIVE_OUTLIER
    | QualityFlags.BAD_CALIBRATION
)

#: Bits the aggregator's cleaning sets: a single-point outlier (cosmic ray, glitch; eclipses
#: and flares are kept) and a cadence where the whole ensemble of quiet stars is noisy
#: (scattered light, pointing excursion).
CLEANING_BITS = int(QualityFlags.OUTLIER | QualityFlags.BAD_EPOCH)

#: Bits that make a measurement unusable for variability analysis by default: SPOC's mask
#: plus this pipeline's saturated, negative-flux and off-chip measurements and the points its
#: cleaning rejected.
DEFAULT_BAD_BITS = SPOC_DEFAULT_BITMASK | CLEANING_BITS | int(
    QualityFlags.SATURATED | QualityFlags.NEGATIVE_FLUX | QualityFlags.OUTSIDE
)


def is_good(quality: int, bad_bits: int = DEFAULT_BAD_BITS) -> bool:
    """Return True when none of ``bad_bits`` is set in ``quality``."""
    return (int(quality) & bad_bits) == 0


def good_mask(quality: npt.ArrayLike, bad_bits: int = DEFAULT_BAD_BITS) -> npt.NDArray[np.bool_]:
    """Vectorised :func:`is_good`: a boolean mask of usable measurements."""
    return (np.asarray(quality, dtype=np.int64) & bad_bits) == 0
