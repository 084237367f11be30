"""Per-star barycentric times (shared/timing.py) against astropy's own light-travel time."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time

from tess_ffi.shared.timing import BTJD_OFFSET, BarycentricCorrection, ccd_reference_direction


def test_offsets_match_astropy_light_travel_time_differences() -> None:
    btjd = np.linspace(1325.3, 1353.2, 40)  # sector 1
    ref_ra, ref_dec = 342.03, -46.26  # a sector 1 camera 2 CCD centre
    ra = np.array([342.03, 330.0, 355.0, 342.0, 345.0])
    dec = np.array([-46.26, -42.0, -51.0, -54.5, -38.0])
    ours = BarycentricCorrection(btjd, ref_ra, ref_dec).offsets_days(ra, dec) * 86400
    geocentre = EarthLocation.from_geocentric(0, 0, 0, unit=u.m)
    times = Time(btjd + BTJD_OFFSET, format="jd", scale="tdb", location=geocentre)

    def ltt(r: float, d: float) -> np.ndarray:
        return times.light_travel_time(SkyCoord(r, d, unit="deg"), "barycentric").to_value("s")

    expected = np.array([ltt(r, d) for r, d in zip(ra, dec, strict=True)]) - ltt(ref_ra, ref_dec)
    np.testing.assert_allclose(ours, expected, atol=0.01)
    assert np.all(ours[0] == 0)  # the reference direction itself
    assert 10 < np.max(np.abs(ours)) < 120  # stars across a CCD: tens of seconds


def test_ccd_reference_direction_is_the_centre_of_a_real_wcs() -> None:
    from pathlib import Path

    from astropy.io import fits
    from astropy.wcs import WCS

    path = (Path(__file__).resolve().parents[2] / "shared" / "data" / "tess" / "format_refs"
            / "astrocut_ex_ffi_wcs.txt")
    if not path.exists():
        pytest.skip(f"{path} is not available")
    wcs = WCS(fits.Header.fromstring(path.read_text()))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(44, 2092, 500), rng.uniform(0, 2048, 500)
    ra, dec = wcs.all_pix2world(x, y, 0)
    centre = wcs.all_pix2world([[1067.5, 1023.5]], 0)[0]
    got = ccd_reference_direction(x, y, ra, dec)
    sep = SkyCoord(*got, unit="deg").separation(SkyCoord(*centre, unit="deg")).arcsec
    assert sep < 60  # well under 3 px; 1' of direction is < 0.02 s of time


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 stars"):
        ccd_reference_direction([1.0], [1.0], [10.0], [10.0])
    with pytest.raises(ValueError, match="finite"):
        BarycentricCorrection([np.nan], 0.0, 0.0)
