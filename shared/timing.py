"""Per-star barycentric times.

TESS FFI times (``TSTART``, ``TSTOP``) are BTJD (BJD_TDB - 2457000) corrected to the solar
system barycentre for *one* direction: the header's ``BARYCORR`` is computed for the centre
of the CCD. A star elsewhere on the CCD (up to ~8.5 deg away, the CCD's half-diagonal)
receives its light earlier or later by the projection of the spacecraft's barycentric
position onto the difference of the two directions: up to about 70 s, changing slowly over
a sector as the Earth moves. :class:`BarycentricCorrection` gives that difference,

``dt_star = r(t) . (n_star - n_ref) / c``,

with ``r`` the Earth's barycentric position (astropy's built-in ERFA ephemeris, nothing to
download) standing in for the spacecraft's: TESS stays within ~0.0025 au (1.25 light-seconds)
of the Earth, so the error is below 1.25 s x |n_star - n_ref|, a fraction of a second.

Examples
--------
>>> import numpy as np
>>> corr = BarycentricCorrection(np.array([1330.0, 1340.0]), ref_ra=90.0, ref_dec=-66.0)
>>> dt = corr.offsets_days(np.array([90.0, 100.0]), np.array([-66.0, -60.0]))
>>> dt.shape, float(dt[0, 0])            # the reference direction itself: no change
((2, 2), 0.0)
>>> bool(0 < np.max(np.abs(dt[1])) * 86400 < 70)
True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BTJD_OFFSET", "BarycentricCorrection", "unit_vectors", "ccd_reference_direction"]

#: BTJD = BJD_TDB - 2457000.
BTJD_OFFSET = 2_457_000.0
_C_AU_PER_DAY = 173.14463267424034  # speed of light in au/day (IAU 2012 au)


def unit_vectors(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """ICRS unit vectors ``(n, 3)`` of directions given in degrees.

    >>> unit_vectors([0.0, 90.0], [0.0, 0.0]).round(12).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    a = np.radians(np.asarray(ra, dtype=np.float64).ravel())
    d = np.radians(np.asarray(dec, dtype=np.float64).ravel())
    return np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])


def ccd_reference_direction(
    x: npt.ArrayLike, y: npt.ArrayLike, ra: npt.ArrayLike, dec: npt.ArrayLike,
    centre: tuple[float, float] = (1067.5, 1023.5),
) -> tuple[float, float]:
    """RA and Dec (deg) of the CCD's centre (``centre`` = column, row of the science area's
    middle in the full FFI array), from the stars' pixel and sky positions: a least-squares
    quadratic map of their unit vectors over the CCD (linear with fewer than 10 stars: the
    gnomonic projection bends a 12-degree field), evaluated at the centre.

    >>> x, y = np.array([0.0, 2000, 0, 2000]), np.array([0.0, 0, 2000, 2000])
    >>> ra, dec = 100 + x / 1000, -50 + y / 1000      # a small, nearly linear patch
    >>> [round(v, 2) for v in ccd_reference_direction(x, y, ra, dec, centre=(1000, 1000))]
    [101.0, -49.0]
    """
    xa, ya, ra_a, dec_a = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, ra, dec))
    located = np.isfinite(xa) & np.isfinite(ya) & np.isfinite(ra_a) & np.isfinite(dec_a)
    xa, ya, ra_a, dec_a = xa[located], ya[located], ra_a[located], dec_a[located]
    if xa.size < 3:
        raise ValueError(
            f"need at least 3 stars with finite positions to locate the CCD centre, got {xa.size}")
    u, v = (xa - centre[0]) / 1000.0, (ya - centre[1]) / 1000.0
    terms = [np.ones_like(u), u, v] + ([u * u, u * v, v * v] if xa.size >= 10 else [])
    design = np.column_stack(terms)
    coef, *_ = np.linalg.lstsq(design, unit_vectors(ra_a, dec_a), rcond=None)
    n = coef[0] / np.linalg.norm(coef[0])
    return float(np.degrees(np.arctan2(n[1], n[0])) % 360.0), float(np.degrees(np.arcsin(n[2])))


class BarycentricCorrection:
    """Per-star corrections of CCD-centre BTJD times on a fixed grid of cadences.

    Parameters
    ----------
    btjd : array_like
        The cadences' times as the FFI headers give them (BTJD for the CCD centre).
    ref_ra, ref_dec : float
        The direction the header times are corrected for (the CCD centre, see
        :func:`ccd_reference_direction`), degrees.
    """

    def __init__(self, btjd: npt.ArrayLike, ref_ra: float, ref_dec: float) -> None:
        from astropy.coordinates import get_body_barycentric
        from astropy.time import Time

        t = np.asarray(btjd, dtype=np.float64).ravel()
        if not np.all(np.isfinite(t)):
            raise ValueError("btjd must be finite")
        self.btjd = t
        self.reference = unit_vectors([ref_ra], [ref_dec])[0]
        if t.size:
            earth = get_body_barycentric("earth", Time(t + BTJD_OFFSET, format="jd", scale="tdb"))
            self._r_au = np.asarray(earth.xyz.to_value("au"))  # (3, n_cadences), ICRS axes
        else:
            self._r_au = np.zeros((3, 0))

    @classmethod
    def for_star_list(
        cls, btjd: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, ra: npt.ArrayLike,
        dec: npt.ArrayLike,
    ) -> BarycentricCorrection | None:
        """The correction of a target's header times, its reference direction located from
        its whole star list (:func:`ccd_reference_direction`); None when fewer than 3 stars
        have finite positions (the header times then stay as they are)."""
        finite = [np.isfinite(np.asarray(v, dtype=np.float64)) for v in (x, y, ra, dec)]
        if int(np.sum(finite[0] & finite[1] & finite[2] & finite[3])) < 3:
            return None
        return cls(btjd, *ccd_reference_direction(x, y, ra, dec))

    def offsets_days(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(n_stars, n_cadences)`` days to add to the header times for each star."""
        dn = unit_vectors(ra, dec) - self.reference[None, :]
        return np.asarray(dn @ self._r_au / _C_AU_PER_DAY)
