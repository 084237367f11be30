"""Untrusted input is bounded, secrets stay secret, HTTP endpoints are read-only and local."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from astropy.io import fits

from tess_ffi.services.fetcher.download import mast_path
from tess_ffi.services.fetcher.sources import SourceError
from tess_ffi.shared.bus import EmbeddedBus
from tess_ffi.shared.config import load_settings
from tess_ffi.shared.fits_io import MAX_FFI_BYTES, FITSError, read_calibrated_ffi
from tess_ffi.shared.runtime import build_http_app


def fits_bytes(header_cards: dict[str, object], data: np.ndarray | None = None) -> bytes:
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, fits.Header(header_cards))])
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def test_absurd_image_dimensions_are_refused_before_reading() -> None:
    # A header that claims a 100,000 x 100,000 image (40 GB) but carries no such data.
    good = fits_bytes({"TSTART": 1.0, "TSTOP": 2.0}, np.zeros((4, 4), np.float32))
    forged = good.replace(b"NAXIS1  =                    4",
                          b"NAXIS1  =               100000").replace(
                          b"NAXIS2  =                    4",
                          b"NAXIS2  =               100000")
    assert forged != good
    with pytest.raises(FITSError) as info:
        read_calibrated_ffi(forged, name="forged.fits", expected_shape=None)
    assert "forged.fits" in str(info.value) and "\n" not in str(info.value)


def test_a_header_without_end_is_refused_without_parsing_gigabytes() -> None:
    endless = b"SIMPLE  =                    T" + b" " * 50 + b"COMMENT " + b"x" * 72
    endless = endless + b"COMMENT " * ((3 * 2**20) // 8)
    endless += b" " * (-len(endless) % 2880)
    with pytest.raises(FITSError, match="no END card"):
        read_calibrated_ffi(endless, name="endless.fits")
    with pytest.raises(FITSError, match="more than an FFI can be"):
        read_calibrated_ffi(b"SIMPLE  =" + b" " * (MAX_FFI_BYTES + 2880), name="huge.fits")


def test_missing_header_key_is_one_clear_line() -> None:
    data = fits_bytes({"TSTART": 1.0}, np.zeros((4, 4), np.float32))
    with pytest.raises(FITSError, match=r"^x\.fits: missing header key TSTOP$"):
        read_calibrated_ffi(data, name="x.fits", expected_shape=None)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b_ffic.fits", "..%2F_ffic.fits",
                                  "tess2019-s0018-1-3-0162-s_ffic.fits/../../x"])
def test_archive_names_never_escape_the_data_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        mast_path(tmp_path, name)


def test_broker_password_is_never_printed(tmp_path: Path) -> None:
    env = {**os.environ, "TESS_FFI_BROKER": "amqp://tess:hunter2secret@127.0.0.1:1/"}
    result = subprocess.run(
        [sys.executable, "-m", "tess_ffi.cli", "serve", "photometer", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 2
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "amqp://tess:***@127.0.0.1:1/" in result.stderr


def test_broker_url_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "broker"
    secret.write_text("amqp://u:p@rabbit:5672/\n")
    monkeypatch.delenv("TESS_FFI_BROKER", raising=False)
    monkeypatch.setenv("TESS_FFI_BROKER_FILE", str(secret))
    assert load_settings().broker_url == "amqp://u:p@rabbit:5672/"


def test_http_binds_to_localhost_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESS_FFI_HTTP_HOST", raising=False)
    assert load_settings().http_host == "127.0.0.1"


async def test_http_endpoints_are_read_only() -> None:
    bus = EmbeddedBus()
    await bus.connect()
    app = build_http_app([], bus)
    async with TestClient(TestServer(app)) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/status"):
            assert (await client.get(path)).status in (200, 503)
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                response = await client.request(method, path)
                assert response.status == 405, (method, path)
    await bus.close()
