"""MastSource and download_sector against a MAST-like server on 127.0.0.1 (no internet).

The server (:mod:`mast_server`) serves a small simulated sector (sector 18, camera 1, CCD 3,
200 stars, 12 cadences of full-size 35 MB FFIs) in the archive's layout, with faults drawn
deterministically from a seed.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from mast_server import (  # noqa: F401 - mast_server_factory_fixture registers a fixture
    Faults,
    MastLikeServer,
    TinySector,
    mast_server_factory_fixture,
    simulated_sector,
)

from tess_ffi.services.fetcher.download import download_sector, mast_path
from tess_ffi.services.fetcher.mast import (
    MastSource,
    NotFoundError,
    RetryPolicy,
    parse_bulk_script,
)
from tess_ffi.services.fetcher.sources import FFIEntry, PathSource, SourceError
from tess_ffi.shared.contracts import JobSpec
from tess_ffi.shared.fits_io import FITSError, read_calibrated_ffi

#: Quick retries so faults cost milliseconds; generous total timeout, short read timeout.
FAST = RetryPolicy(max_attempts=6, base_delay_s=0.01, max_delay_s=0.05, timeout_s=120.0,
                   read_timeout_s=30.0)


def job_for(server: MastLikeServer, **kw: object) -> JobSpec:
    return JobSpec(sector=server.sector_number, camera=server.camera, ccd=server.ccd,
                   mast_url=server.base_url, **kw)  # type: ignore[arg-type]


def source_for(server: MastLikeServer, policy: RetryPolicy = FAST, **kw: object) -> MastSource:
    return MastSource(job_for(server, **kw), policy=policy, rng=random.Random(0))


def gets(server: MastLikeServer, name: str) -> list:
    return server.requests_for(name, "GET")


# --- listing ------------------------------------------------------------------------------


async def test_bulk_script_listing_keeps_job_ccd_in_time_order(mast_server_factory):
    server = await mast_server_factory()
    script = server.bulk_script()
    pairs, _ = parse_bulk_script(script)
    assert script.startswith("#!/bin/sh\ncurl -C - -L -o ")
    assert len(pairs) == 16 * len(server.names)
    first = [n for n, _ in pairs[:20]]
    assert first != sorted(first)  # mixed, like the real script
    assert len({n.split("-")[2] + n.split("-")[3] for n, _ in pairs}) == 16

    source = source_for(server)
    try:
        entries = await source.list_ffis()
    finally:
        await source.close()
    sim = simulated_sector()
    assert [e.name for e in entries] == [sim.ffi_filename(i) for i in range(12)]
    assert [e.cadence for e in entries] == list(range(12))
    times = [e.name[4:17] for e in entries]
    assert times == sorted(times)
    assert all(e.location == server.api_url(e.name) for e in entries)
    assert source.listing == "bulk_script"


async def test_directory_fallback_gives_the_same_list(mast_server_factory):
    server = await mast_server_factory(faults=Faults(hide_script=True))
    source = source_for(server)
    try:
        entries = await source.list_ffis()
        via_dirs = [(e.cadence, e.name) for e in entries]
        server.faults.hide_script = False
        via_script = [(e.cadence, e.name) for e in await source.list_ffis()]
    finally:
        await source.close()
    assert via_dirs == via_script
    assert entries[0].location == server.base_url + server.archive_path(entries[0].name)
    assert any(r.status == 404 and "download_scripts" in r.path for r in server.log)


async def test_nonexistent_sector_is_one_clear_line(mast_server_factory):
    server = await mast_server_factory()
    source = MastSource(JobSpec(sector=19, camera=1, ccd=3, mast_url=server.base_url),
                        policy=FAST)
    try:
        with pytest.raises(SourceError) as err:
            await source.list_ffis()
    finally:
        await source.close()
    msg = str(err.value)
    assert msg.startswith(f"sector 19: no calibrated FFIs found at {server.base_url} (")
    assert "\n" not in msg
    assert source.stats["retries"] == 0  # a 404 is not retried


def test_invalid_job_is_refused():
    with pytest.raises(SourceError, match="camera must be 1-4"):
        MastSource(JobSpec(sector=18, camera=0, ccd=1))
    with pytest.raises(SourceError, match="sector"):
        MastSource(JobSpec(sector=0, camera=1, ccd=1))


def test_script_urls_move_onto_a_given_base_only():
    real = "https://mast.stsci.edu/api/v0.1/Download/file/?uri=mast:TESS/product/x_ffic.fits"
    default = MastSource(JobSpec(sector=18, camera=1, ccd=3))
    assert default.base_url == "https://archive.stsci.edu/"
    assert default.location_of(real) == real
    assert default.location_of("https://evil.example/x").startswith("https://archive.stsci.edu/")
    mirror = MastSource(JobSpec(sector=18, camera=1, ccd=3, mast_url="http://127.0.0.1:9"))
    assert mirror.location_of(real) == (
        "http://127.0.0.1:9/api/v0.1/Download/file/?uri=mast:TESS/product/x_ffic.fits"
    )


# --- fetching -------------------------------------------------------------------------------


async def test_fetch_with_503s_and_truncations_is_byte_identical(mast_server_factory):
    names = [simulated_sector().ffi_filename(i) for i in range(12)]
    faults = Faults(seed=0, error_fraction=0.10, truncate_fraction=0.05, retry_after_s=0.05,
                    truncate_first={names[-1]: 1})
    server = await mast_server_factory(faults=faults)
    source = source_for(server, workers=4)
    sim = simulated_sector()

    async def check(entry: FFIEntry) -> None:
        data = await source.fetch(entry)
        assert data == await asyncio.to_thread(sim.ffi_bytes, entry.cadence), entry.name

    try:
        entries = await source.list_ffis()
        await asyncio.gather(*(check(e) for e in entries))
    finally:
        await source.close()
    assert server.injected["503"] > 0 and server.injected["truncated"] > 0
    stats = source.stats
    assert stats["fetched"] == 12
    assert stats["failures"].get("http_503", 0) == server.injected["503"]
    assert stats["failures"].get("truncated", 0) == server.injected["truncated"]
    assert stats["retries"] == sum(server.injected.values())
    assert all(server.completed[n] == 1 for n in names)


async def test_stall_hits_the_read_timeout_and_is_retried(mast_server_factory):
    name = simulated_sector().ffi_filename(2)
    server = await mast_server_factory(faults=Faults(stall_first={name: 1}, stall_s=10.0))
    expected = await server.expected_bytes(name)  # rendered now: only the stall is slow
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, read_timeout_s=1.0, timeout_s=60)
    source = source_for(server, policy=policy)
    try:
        entries = await source.list_ffis()
        data = await source.fetch(entries[2])
    finally:
        await source.close()
    assert data == expected
    assert source.stats["failures"] == {"timeout": 1}
    assert [r.outcome for r in gets(server, name)] == ["stall", "ok"]


async def test_retry_after_is_honoured(mast_server_factory):
    sim = simulated_sector()
    a, b = sim.ffi_filename(0), sim.ffi_filename(1)
    faults = Faults(fail_first={a: 1}, retry_after_fraction=1.0, retry_after_s=0.3)
    server = await mast_server_factory(faults=faults)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001)
    source = source_for(server, policy=policy)
    try:
        entries = await source.list_ffis()
        await source.fetch(entries[0])
        first, second = gets(server, a)
        assert first.status == 503 and second.status == 200
        assert second.t - first.t >= 0.3  # the backoff alone would be about 1 ms
        # The HTTP-date form (whole seconds, at least 1 s ahead) is parsed, and capped.
        server.faults = Faults(fail_first={b: 1}, retry_after_fraction=1.0, retry_after_s=0.0,
                               retry_after_date=True)
        source.policy = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001,
                                    retry_after_cap_s=0.25)
        await source.fetch(entries[1])
    finally:
        await source.close()
    first, second = gets(server, b)
    assert second.t - first.t >= 0.25


async def test_404_is_not_retried_and_attempts_run_out(mast_server_factory):
    sim = simulated_sector()
    stuck = sim.ffi_filename(3)
    server = await mast_server_factory(faults=Faults(fail_first={stuck: 99},
                                                     retry_after_fraction=0.0))
    source = source_for(server, policy=RetryPolicy(max_attempts=3, base_delay_s=0.001))
    other_ccd = sim.ffi_filename(0).replace("-1-3-", "-2-4-")
    try:
        with pytest.raises(NotFoundError, match="not found"):
            await source.fetch(FFIEntry(0, other_ccd, server.api_url(other_ccd)))
        assert len(gets(server, other_ccd)) == 1
        entries = await source.list_ffis()
        with pytest.raises(SourceError) as err:
            await source.fetch(entries[3])
    finally:
        await source.close()
    assert str(err.value) == f"{stuck}: gave up after 3 attempts: HTTP 503 Service Unavailable"
    assert source.stats["gave_up"] == 1 and len(gets(server, stuck)) == 3


async def test_corrupt_fits_content_is_left_to_the_caller(mast_server_factory):
    """A file with sound FITS structure but a broken inside is returned as it is; parsing
    raises FITSError. A file failing the structure check is retried, then given up."""
    sim = simulated_sector()
    bad = sim.ffi_filename(4)
    server = await mast_server_factory(faults=Faults(corrupt={bad}))
    source = source_for(server, policy=RetryPolicy(max_attempts=2, base_delay_s=0.001))
    try:
        entries = await source.list_ffis()
        data = await source.fetch(entries[4])
        assert source.stats["retries"] == 0
        with pytest.raises(FITSError):
            read_calibrated_ffi(data, name=bad)
        server.faults.corrupt_mode = "structure"
        with pytest.raises(SourceError, match=r"gave up after 2 attempts: .*not a FITS file"):
            await source.fetch(entries[4])
    finally:
        await source.close()
    assert source.stats["failures"]["corrupt"] == 2


# --- download -------------------------------------------------------------------------------


async def test_download_writes_mast_layout_and_second_call_fetches_nothing(
    mast_server_factory, tmp_path: Path
):
    server = await mast_server_factory()
    job = job_for(server, cadence_skip=3, workers=2)
    seen: list[tuple[int, int]] = []
    summary = await download_sector(job, tmp_path, progress=lambda d, n: seen.append((d, n)))
    wanted = server.names[::3]
    assert sorted(summary.downloaded) == sorted(wanted) and summary.ok
    assert (summary.listed, summary.selected) == (12, 4)
    assert seen[-1] == (4, 4)
    for name in wanted:
        path = mast_path(tmp_path, name)
        t = name[4:17]
        assert path == tmp_path.joinpath(
            "mast/missions/tess/ffi/s0018", t[:4], t[4:7], "1-3", name
        )
        assert path.read_bytes() == await server.expected_bytes(name)
    assert not list(tmp_path.rglob("*.part"))

    path_source = PathSource(job, tmp_path)
    assert [e.name for e in await path_source.list_ffis()] == wanted

    server.reset_counts()
    again = await download_sector(job, tmp_path)
    assert sorted(again.skipped) == sorted(wanted) and not again.downloaded
    assert not [r for r in server.log if r.method == "GET" and r.name]
    assert sum(server.completed.values()) == 0

    server.faults.no_head = True  # the size then comes from a one-byte Range request
    server.reset_counts()
    third = await download_sector(job, tmp_path)
    assert sorted(third.skipped) == sorted(wanted)
    assert {r.range for r in server.log if r.method == "GET" and r.name} == {"bytes=0-0"}


async def test_download_resumes_a_part_file_with_range(mast_server_factory, tmp_path: Path):
    server = await mast_server_factory()
    job = job_for(server, cadence_skip=12)  # cadence 0 only
    name = server.names[0]
    full = await server.expected_bytes(name)
    target = mast_path(tmp_path, name)
    target.parent.mkdir(parents=True)
    target.with_name(name + ".part").write_bytes(full[:10_000_000])
    summary = await download_sector(job, tmp_path)
    assert summary.resumed == [name] and not summary.downloaded
    assert [(r.range, r.status) for r in gets(server, name)] == [("bytes=10000000-", 206)]
    assert server.completed[name] == 0 and server.ranged[name] == 1
    assert target.read_bytes() == full
    assert not target.with_name(name + ".part").exists()


async def test_download_resumes_a_truncated_body(mast_server_factory, tmp_path: Path):
    server = await mast_server_factory()
    name = server.names[0]
    server.faults = Faults(truncate_first={name: 1})
    summary = await download_sector(job_for(server, cadence_skip=12), tmp_path,
                                    source=source_for(server, cadence_skip=12))
    first, second = gets(server, name)
    assert first.outcome == "truncated" and first.range is None
    assert second.range is not None and second.range.startswith("bytes=") and second.status == 206
    assert summary.downloaded == [name] and summary.stats["failures"] == {"truncated": 1}
    assert mast_path(tmp_path, name).read_bytes() == await server.expected_bytes(name)


async def test_download_refuses_names_that_escape(tmp_path: Path):
    evil = [
        "curl -C - -L -o ../../evil_ffic.fits https://mast.stsci.edu/api/v0.1/Download/file/"
        "?uri=mast:TESS/product/../../evil_ffic.fits",
        "curl -C - -L -o /tmp/evil-s0018-1-3-0162-s_ffic.fits https://mast.stsci.edu/x",
    ]
    data_dir = tmp_path / "data"
    async with MastLikeServer(TinySector(n_cadences=3), extra_script_lines=evil) as server:
        summary = await download_sector(job_for(server), data_dir)
    assert summary.refused == ["../../evil_ffic.fits", "/tmp/evil-s0018-1-3-0162-s_ffic.fits"]
    assert len(summary.downloaded) == 3 and summary.ok
    assert not [p for p in tmp_path.rglob("*evil*")]
    assert not (tmp_path.parent / "evil_ffic.fits").exists()
    assert not Path("/tmp/evil-s0018-1-3-0162-s_ffic.fits").exists()
    with pytest.raises(SourceError, match="unsafe"):
        mast_path(data_dir, "../../evil_ffic.fits")
