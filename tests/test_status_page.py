"""The status web page (shared/status_page.py), in headless Chromium against a real job.

A small simulated job runs in-process with its HTTP endpoints on; while it runs, Chromium
loads ``/`` (its JavaScript polls ``/status``) and must show the job's progress; once it has
completed, the page must show its top candidates with their phase-folded light curves.
Under CI (``CI`` set) a missing Chromium fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import socket
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tess_ffi.pipeline import make_bus, make_services
from tess_ffi.shared.bus import Delivery
from tess_ffi.shared.config import load_settings
from tess_ffi.shared.contracts import JobEvent, JobRequest, JobSpec, Topic
from tess_ffi.shared.runtime import build_http_app, running_services, start_http
from tess_ffi.shared.status_page import INDEX_HTML, phase_folded_svg

WINDOW = (1280, 900)
N_CADENCES = 40
JOB: dict[str, Any] = dict(sector=1, camera=1, ccd=1, source="sim",
                           sim={"n_stars": 200, "n_cadences": N_CADENCES, "seed": 3})


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _chromium_run(chromium: str, profile: Path, *args: str, timeout: float = 90) -> str:
    """Run headless Chromium (as a subprocess, so this event loop keeps serving the page)."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--virtual-time-budget=3000", *args,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"chromium did not finish in {timeout} s: {' '.join(cmd)}") from None
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {err.decode()[-2000:]}"
    return out.decode()


async def dump_dom(chromium: str, tmp: Path, url: str) -> str:
    profile = tmp / f"profile-{_free_port()}"
    return await _chromium_run(chromium, profile, "--dump-dom", url)


async def screenshot(chromium: str, tmp: Path, url: str, name: str) -> Path:
    path = tmp / name
    profile = tmp / f"profile-{_free_port()}"
    await _chromium_run(chromium, profile, f"--screenshot={path}",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert len(data) > 10_000, "the screenshot is suspiciously small (a blank page?)"
    return width, height


def cell(dom: str, column: str) -> int | None:
    """The number in the jobs table's cell of class ``column`` (None when absent or '–')."""
    match = re.search(rf'<td class="num {column}">(\d+)</td>', dom)
    return int(match.group(1)) if match else None


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def test_svg_is_well_formed_and_folds():
    btjd = [1325.0 + 0.01 * i for i in range(300)]
    flux = [1.0 - (0.2 if (t % 0.7) < 0.05 else 0.0) for t in btjd]
    svg = phase_folded_svg(btjd, flux, 0.7)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "phase (P = 0.7 d)" in svg and "polyline" in svg
    unfolded = phase_folded_svg(btjd, flux, float("nan"))
    ET.fromstring(unfolded)
    assert "no period" in unfolded
    ET.fromstring(phase_folded_svg([], [], 1.0))


def test_page_needs_no_network():
    """Everything is inline: no external script, style, font or image."""
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', INDEX_HTML)
    assert "@import" not in INDEX_HTML and "url(" not in INDEX_HTML
    assert 'fetch("status"' in INDEX_HTML


async def test_routes_registered(tmp_path):
    settings = dataclasses.replace(load_settings(data_dir=tmp_path), broker_url=None)
    bus = make_bus(settings)
    app = build_http_app(make_services(["all"], bus, settings), bus)
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/ui"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 200
                    assert response.content_type == "text/html"
                    assert "tess-ffi status" in await response.text()
            async with session.get(f"http://127.0.0.1:{port}/ui/candidates") as response:
                assert response.status == 200
                assert (await response.text()).strip() == ""  # no job yet
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_status_page_in_chromium(tmp_path):
    chromium = _chromium()
    port = _free_port()
    settings = dataclasses.replace(
        load_settings(data_dir=tmp_path / "data", http_port=port, http_host="127.0.0.1"),
        broker_url=None,
    )
    job = JobSpec(**JOB)
    url = f"http://127.0.0.1:{port}/"
    bus = make_bus(settings)
    services = make_services(["all"], bus, settings)
    async with running_services(services, bus, settings) as bound:
        assert bound == port
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_event(message: Any, delivery: Delivery) -> None:
            if isinstance(message, JobEvent) and message.job.run_id == job.run_id:
                if message.kind == "completed" and not done.done():
                    done.set_result(dict(message.detail))
                elif message.kind == "failed" and not done.done():
                    done.set_exception(AssertionError(f"job failed: {message.detail}"))

        sub = await bus.subscribe(Topic.EVENTS, None, on_event, prefetch=16)
        await bus.publish(JobRequest(job=job))

        # While the job runs: wait until FFIs are fetched, measured and stored, then let
        # Chromium render the page.
        for _ in range(1500):
            status = await get_json(url + "status")
            jobs = {name: s["jobs"].get(job.job_id, {}) for name, s in status["services"].items()}
            if jobs["aggregator"].get("stored", 0) > 0 or done.done():
                break
            await asyncio.sleep(0.2)
        assert not done.done(), "the job finished before the page could be seen running"
        dom = await dump_dom(chromium, tmp_path, url)
        assert job.job_id in dom and job.run_id in dom
        assert (cell(dom, "fetched") or 0) > 0, "the page shows no fetched FFI"
        assert cell(dom, "measured") is not None and cell(dom, "stored") is not None
        assert "fetcher: " in dom and "photometer" in dom
        assert "tess-ffi.ffi.photometer" not in dom  # embedded bus: queues have short names
        assert "ffi.photometer" in dom, "the queue depths are missing"
        shot = await screenshot(chromium, tmp_path, url, "running.png")
        assert png_size(shot) == WINDOW

        summary = await asyncio.wait_for(done, 300)
        assert summary["candidates"] > 0

        # Completed: the top candidates with their phase-folded light curves.
        dom = await dump_dom(chromium, tmp_path, url)
        assert re.search(r"enricher: completed", dom)
        assert cell(dom, "stored") == N_CADENCES
        section = re.search(rf'<section class="cands" data-job="{job.job_id}">(.*?)</section>',
                            dom, re.S)
        assert section, "no candidates section after completion"
        assert f"top {min(5, summary['candidates'])} of {summary['candidates']}" in section.group(1)
        svgs = re.findall(r"<svg[^>]*class=\"lc\".*?</svg>", section.group(1), re.S)
        assert len(svgs) == min(5, summary["candidates"])
        assert all('class="pts"' in s for s in svgs), "a light curve has no points"
        shot = await screenshot(chromium, tmp_path, url, "completed.png")
        assert png_size(shot) == WINDOW
        await sub.cancel()
    keep = os.environ.get("TESS_FFI_KEEP_SCREENSHOTS")
    if keep:  # for a person to look at
        for name in ("running.png", "completed.png"):
            shutil.copy(tmp_path / name, Path(keep) / name)
