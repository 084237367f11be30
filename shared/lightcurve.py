"""Rules about a light curve's columns that the analyzer and the products share.

Examples
--------
>>> import numpy as np
>>> f, e = corrected_flux([100.0, 100.0], [1.0, 1.0], [110.0, np.nan])
>>> f.tolist(), e.tolist()
([110.0, 100.0], [1.1, 1.0])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["corrected_flux"]


def corrected_flux(
    flux: npt.ArrayLike, flux_err: npt.ArrayLike, flux_corrected: npt.ArrayLike | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The flux to analyse and show: the cleaning's corrected flux where a point has one, with
    its error scaled as the flux was (``flux_err * |flux_corrected / flux|``); the raw flux and
    error elsewhere, and everywhere when ``flux_corrected`` is None."""
    raw = np.asarray(flux, dtype=np.float64)
    err = np.asarray(flux_err, dtype=np.float64)
    if flux_corrected is None:
        return raw, err
    corrected = np.asarray(flux_corrected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.abs(corrected / raw)
    use = np.isfinite(corrected) & np.isfinite(scale)
    return np.where(use, corrected, raw), np.where(use, err * scale, err)
