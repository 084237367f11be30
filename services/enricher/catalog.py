"""Positional cross-match of candidates against a reference catalog.

Examples
--------
>>> import pandas as pd
>>> cands = pd.DataFrame({"star_id": [1, 2], "ra": [10.0, 20.0], "dec": [-5.0, -5.0]})
>>> cat = pd.DataFrame({"id": [77], "ra": [10.001], "dec": [-5.0], "tmag": [11.2]})
>>> out = crossmatch(cands, cat, radius_arcsec=21.0)
>>> out["catalog_id"].tolist(), round(float(out["catalog_sep_arcsec"].iloc[0]), 1)
([77, <NA>], 3.6)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["crossmatch", "TESS_PIXEL_ARCSEC"]

TESS_PIXEL_ARCSEC = 21.0


def crossmatch(
    candidates: pd.DataFrame, catalog: pd.DataFrame, *, radius_arcsec: float = TESS_PIXEL_ARCSEC
) -> pd.DataFrame:
    """Nearest catalog source within ``radius_arcsec`` of each candidate.

    ``catalog`` needs columns ``id``, ``ra``, ``dec``, ``tmag``. Adds ``catalog_id``
    (nullable Int64), ``catalog_tmag`` and ``catalog_sep_arcsec`` (NaN when unmatched).
    """
    if radius_arcsec <= 0:
        raise ValueError(f"radius_arcsec must be positive, got {radius_arcsec}")
    missing = {"id", "ra", "dec", "tmag"} - set(catalog.columns)
    if missing:
        raise ValueError(f"catalog lacks columns {sorted(missing)}")
    out = candidates.copy()
    n = len(out)
    ids = pd.array([pd.NA] * n, dtype="Int64")
    tmag = np.full(n, np.nan)
    sep = np.full(n, np.nan)
    if n and len(catalog):
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        c1 = SkyCoord(out["ra"].to_numpy() * u.deg, out["dec"].to_numpy() * u.deg)
        c2 = SkyCoord(catalog["ra"].to_numpy() * u.deg, catalog["dec"].to_numpy() * u.deg)
        idx, d2d, _ = c1.match_to_catalog_sky(c2)
        arcsec = d2d.to_value(u.arcsec)
        ok = arcsec <= radius_arcsec
        ids[ok] = catalog["id"].to_numpy()[idx[ok]]
        tmag[ok] = catalog["tmag"].to_numpy()[idx[ok]]
        sep[ok] = arcsec[ok]
    out["catalog_id"] = ids
    out["catalog_tmag"] = tmag
    out["catalog_sep_arcsec"] = sep
    return out
