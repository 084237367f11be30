"""The command line: clear one-line errors, help with examples, the download path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from mast_server import mast_server_factory_fixture  # noqa: F401 - registers the fixture

from tess_ffi.cli import build_parser
from tess_ffi.shared.config import output_dir

ENV = {k: v for k, v in os.environ.items() if k != "TESS_FFI_BROKER"}


def tess_ffi(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tess_ffi.cli", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["process", "--sector", "0", "--source", "sim"], "sector must be a positive"),
        (["process", "--sector", "1", "--camera", "5", "--source", "sim"], "camera must be 1-4"),
        (["process", "--sector", "1", "--ccd", "0", "--source", "sim"], "ccd must be 1-4"),
        (["process", "--sector", "1", "--source", "/no/such/folder"],
         "not 'mast', 'sim' or an existing folder"),
        (["process", "--sector", "1", "--source", "sim", "--broker", "amqp://guest:pw@127.0.0.1:1/"],
         "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/"),
        (["process", "--sector", "1", "--source", "sim", "--broker", "http://x"], "broker URL must start"),
        (["serve", "nonsense", "--broker", "amqp://guest:guest@127.0.0.1:1/"], "unknown service"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    result = tess_ffi(*args, "--data-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tess-ffi: error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr and "pw@" not in result.stderr


def test_every_command_has_help_with_examples() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():  # type: ignore[attr-defined]
        text = command.format_help()
        assert "example" in text, f"{name} --help has no example"


async def test_empty_folder_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ffis").mkdir()
    result = await asyncio.to_thread(
        tess_ffi, "process", "--sector", "18", "--camera", "1", "--ccd", "3",
        "--source", str(tmp_path / "ffis"), "--data-dir", str(tmp_path / "out"),
    )
    assert result.returncode == 2
    assert "no calibrated FFIs of sector 18 camera 1 CCD 3" in result.stderr


async def test_unknown_sector_at_the_archive_is_a_clear_error(
    mast_server_factory: Any, tmp_path: Path
) -> None:
    server = await mast_server_factory(n_cadences=4, n_stars=50)
    result = await asyncio.to_thread(
        tess_ffi, "process", "--sector", "19", "--camera", "1", "--ccd", "3",
        "--mast-url", server.base_url, "--data-dir", str(tmp_path),
    )
    assert result.returncode == 2, result.stderr
    assert "sector 19: no calibrated FFIs found" in result.stderr.strip().splitlines()[-1]


async def test_download_then_process_the_folder(mast_server_factory: Any, tmp_path: Path) -> None:
    server = await mast_server_factory(n_cadences=12, n_stars=120, seed=4)
    args = ["--sector", "18", "--camera", "1", "--ccd", "3", "--data-dir", str(tmp_path)]
    first = await asyncio.to_thread(
        tess_ffi, "download", *args, "--mast-url", server.base_url, "--cadence-skip", "2"
    )
    assert first.returncode == 0, first.stderr
    assert "downloaded 6" in first.stdout
    files = sorted((tmp_path / "mast").rglob("*_ffic.fits"))
    assert len(files) == 6
    assert files[0].read_bytes() == server.sector.ffi_bytes(0)
    server.reset_counts()
    again = await asyncio.to_thread(
        tess_ffi, "download", *args, "--mast-url", server.base_url, "--cadence-skip", "2"
    )
    assert "already complete 6" in again.stdout and sum(server.completed.values()) == 0
    processed = await asyncio.to_thread(
        tess_ffi, "process", *args, "--source", str(tmp_path / "mast")
    )
    assert processed.returncode == 0, processed.stderr
    phot = ds.dataset(output_dir(tmp_path, 18, 1, 3) / "photometry.parquet").to_table()
    assert sorted(set(phot.column("cadence").to_pylist())) == list(range(6))
