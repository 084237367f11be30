"""Reading calibrated TESS FFIs from bytes in memory, with the checks untrusted input needs.

A calibrated FFI (``*-s_ffic.fits``) has a primary header (HDU 0), the image in e-/s
(HDU 1, float32, numpy shape (2078, 2136), TAN-SIP WCS, TSTART/TSTOP in BTJD, DQUALITY) and
the uncertainty image (HDU 2). Everything here works on bytes: nothing touches the disk.

Examples
--------
>>> from astropy.io import fits
>>> import numpy as np
>>> hdr = fits.Header({"TSTART": 1325.3, "TSTOP": 1325.32, "DQUALITY": 0})
>>> hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 5), np.float32), hdr)])
>>> import io; buf = io.BytesIO(); hdul.writeto(buf)
>>> ffi = read_calibrated_ffi(buf.getvalue(), name="tiny.fits", expected_shape=None)
>>> ffi.image.shape, round(ffi.btjd_mid, 2), ffi.uncertainty is None
((4, 5), 1325.31, True)
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

__all__ = [
    "FFI_SHAPE",
    "FITS_BLOCK",
    "MAX_FFI_BYTES",
    "FFI_NAME_RE",
    "CalibratedFFI",
    "FITSError",
    "read_calibrated_ffi",
    "check_fits_structure",
    "header_wcs",
]

FFI_SHAPE = (2078, 2136)
FITS_BLOCK = 2880
#: A calibrated FFI is about 35 MB; anything far bigger is refused before it is parsed.
MAX_FFI_BYTES = 128 * 2**20
MAX_HEADER_BYTES = 2 * 2**20
FFI_NAME_RE = re.compile(
    r"^tess(?P<time>\d{13})-s(?P<sector>\d{4})-(?P<camera>[1-4])-(?P<ccd>[1-4])-"
    r"(?P<scid>\d{4})-s_ffic\.fits$"
)


class FITSError(ValueError):
    """A FITS file that is not a usable calibrated FFI; the message is one line."""


@dataclass(frozen=True)
class CalibratedFFI:
    name: str
    image: np.ndarray
    uncertainty: np.ndarray | None
    header: fits.Header
    tstart: float
    tstop: float
    dquality: int

    @property
    def btjd_mid(self) -> float:
        """Mid-exposure time, BTJD (BJD - 2457000, TDB)."""
        return 0.5 * (self.tstart + self.tstop)


def check_fits_structure(data: bytes, *, name: str = "FITS") -> None:
    """Cheap checks before parsing: size, the FITS signature, block alignment, header size.

    >>> check_fits_structure(b"junk", name="x.fits")
    Traceback (most recent call last):
    ...
    tess_ffi.shared.fits_io.FITSError: x.fits: not a FITS file (no SIMPLE card)
    """
    if len(data) > MAX_FFI_BYTES:
        raise FITSError(f"{name}: {len(data)} bytes is more than an FFI can be ({MAX_FFI_BYTES})")
    if not data.startswith(b"SIMPLE  ="):
        raise FITSError(f"{name}: not a FITS file (no SIMPLE card)")
    if len(data) % FITS_BLOCK:
        raise FITSError(
            f"{name}: truncated FITS ({len(data)} bytes is not a multiple of {FITS_BLOCK})"
        )
    head = data[:MAX_HEADER_BYTES]
    if re.search(rb"END {77}", head) is None:
        raise FITSError(f"{name}: primary header has no END card in its first {MAX_HEADER_BYTES} bytes")


def _float_key(header: fits.Header, key: str, name: str) -> float:
    if key not in header:
        raise FITSError(f"{name}: missing header key {key}")
    try:
        value = float(header[key])
    except (TypeError, ValueError):
        raise FITSError(f"{name}: header key {key} is not a number: {header[key]!r}") from None
    if not np.isfinite(value):
        raise FITSError(f"{name}: header key {key} is not finite")
    return value


def read_calibrated_ffi(
    data: bytes, *, name: str = "FFI", expected_shape: tuple[int, int] | None = FFI_SHAPE
) -> CalibratedFFI:
    """Parse a calibrated FFI held in memory.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        Used in error messages.
    expected_shape : tuple or None
        Shape HDU 1 must have; None accepts any 2-D image.

    Raises
    ------
    FITSError
        For a truncated or corrupt file, a missing image or header key, a wrong shape, or
        an image whose declared size is absurd.
    """
    check_fits_structure(data, name=name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for corrupt input
        raise FITSError(f"{name}: corrupt FITS: {exc}") from None
    with hdul:
        if len(hdul) < 2:
            raise FITSError(f"{name}: no image extension (HDU 1)")
        header = hdul[1].header
        naxis = [int(header.get(f"NAXIS{i}", 0)) for i in (1, 2)]
        if header.get("NAXIS") != 2 or min(naxis) <= 0 or naxis[0] * naxis[1] > 16 * 2**20:
            raise FITSError(f"{name}: HDU 1 is not a plausible 2-D image (NAXIS={naxis})")
        shape = (naxis[1], naxis[0])
        if expected_shape is not None and shape != tuple(expected_shape):
            raise FITSError(f"{name}: image shape {shape}, expected {tuple(expected_shape)}")
        tstart = _float_key(header, "TSTART", name)
        tstop = _float_key(header, "TSTOP", name)
        dquality = int(header.get("DQUALITY", 0))
        try:
            image = np.asarray(hdul[1].data, dtype=np.float32)
            uncertainty = None
            if len(hdul) > 2 and hdul[2].data is not None and hdul[2].data.shape == image.shape:
                uncertainty = np.asarray(hdul[2].data, dtype=np.float32)
        except Exception as exc:  # noqa: BLE001
            raise FITSError(f"{name}: unreadable image data: {exc}") from None
        if image.shape != shape:
            raise FITSError(f"{name}: truncated image data")
        return CalibratedFFI(name, image, uncertainty, header.copy(), tstart, tstop, dquality)


def header_wcs(header: fits.Header | str, *, name: str = "FFI") -> WCS:
    """The celestial WCS of an FFI header (TAN-SIP honoured); FITSError if it has none."""
    if isinstance(header, str):
        header = fits.Header.fromstring(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, relax=True)
        except Exception as exc:  # noqa: BLE001
            raise FITSError(f"{name}: invalid WCS: {exc}") from None
    if not wcs.has_celestial:
        raise FITSError(f"{name}: header has no celestial WCS")
    return wcs.celestial
