"""A MAST-like HTTP server for tests and benchmarks, with deterministic fault injection.

:class:`MastLikeServer` serves one simulated sector/camera/CCD on 127.0.0.1 (a free port)
inside the running event loop, in the archive's real layout:

* ``missions/tess/download_scripts/sector/tesscurl_sector_{N}_ffic.sh``: the bulk script in
  the real format (``#!/bin/sh`` then ``curl -C - -L -o NAME URL``), with lines for all 16
  camera/CCDs mixed in a seeded random order, URLs pointing at this server's API endpoint;
* ``missions/tess/ffi/s{SSSS}/`` -> ``{YYYY}/`` -> ``{DDD}/`` -> ``{cam}-{ccd}/``: Apache-like
  HTML index pages and the files themselves;
* ``api/v0.1/Download/file/?uri=mast:TESS/product/NAME``: the API download endpoint.

FFI bytes are rendered on demand by the sector object (a
:class:`tess_ffi.shared.simulation.SimulatedSector`, or anything with ``config.sector``,
``config.camera``, ``config.ccd``, ``config.n_cadences``, ``ffi_filename(i)`` and
``ffi_bytes(i)``) and kept in a small LRU cache. Only the simulated camera/CCD has files: the
other 15 appear in the bulk script only, and fetching them gives 404. ``HEAD`` and
``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` are supported.

Faults (:class:`Faults`) are drawn per request from ``(seed, method, name, n)`` where ``n``
counts earlier requests of that method for that name, so the same test sees the same faults
whatever the concurrency. The server records every request (:attr:`MastLikeServer.log`) and
counts, per name, successful full GETs (:attr:`MastLikeServer.completed`).

Two fixtures are defined here, registered under the names ``mast_server_factory`` and
``mast_server`` (the functions are ``mast_server_factory_fixture`` and ``mast_server_fixture``,
so importing them does not shadow the test's parameter names).

Use from a test (the fixtures live in this module; import them into the test module or into
``tests/conftest.py``)::

    from mast_server import Faults, mast_server_factory_fixture  # noqa: F401 (fixture)

    async def test_x(mast_server_factory):
        server = await mast_server_factory(n_cadences=6, faults=Faults(error_fraction=0.1))
        job = JobSpec(sector=server.sector_number, camera=server.camera, ccd=server.ccd,
                      mast_url=server.base_url)
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pytest
from aiohttp import web

__all__ = [
    "Faults",
    "RequestRecord",
    "MastLikeServer",
    "TinySector",
    "simulated_sector",
    "mast_server_factory_fixture",
    "mast_server_fixture",
    "API_PATH",
]

API_PATH = "/api/v0.1/Download/file/"
FFI_RE = re.compile(
    r"^tess(?P<time>\d{13})-s(?P<sector>\d{4})-(?P<camera>[1-4])-(?P<ccd>[1-4])-"
    r"(?P<scid>\d{4})-s_ffic\.fits$"
)
_SCRIPT_RE = re.compile(r"^/missions/tess/download_scripts/sector/tesscurl_sector_(\d+)_ffic\.sh$")
_FFI_TREE_RE = re.compile(
    r"^/missions/tess/ffi/s(?P<sector>\d{4})/"
    r"(?:(?P<year>\d{4})/(?:(?P<day>\d{3})/(?:(?P<camccd>[1-4]-[1-4])/(?P<name>[^/]*))?)?)?$"
)


@dataclass
class Faults:
    """What goes wrong, and how often. Fractions are per request; ``*_first`` maps a name to
    the number of its first GETs that fail that way (deterministic single-file tests).

    Parameters
    ----------
    seed : int
        Seeds every random draw.
    error_fraction : float
        GET/HEAD answered 503.
    retry_after_fraction : float
        Of those 503s, the fraction that carry ``Retry-After``.
    retry_after_s : float
        The value sent (seconds; with ``retry_after_date``, an HTTP date at least
        ``retry_after_s + 1`` seconds ahead, whole seconds).
    truncate_fraction : float
        GETs that send the full Content-Length, part of the body, then close the connection.
    stall_fraction, stall_s : float
        GETs that send the headers and a first piece of the body, then go silent for
        ``stall_s`` seconds (longer than the client's read timeout) before carrying on.
    corrupt : set of str
        Names served corrupt: ``corrupt_mode="content"`` keeps the size and the FITS
        structure but blanks the image extension's header (parsing fails);
        ``"structure"`` breaks the SIMPLE card (``check_fits_structure`` fails).
    hide_script : bool
        The bulk script answers 404 (the client must walk the folders).
    bandwidth_bps : float or None
        Per-response throttle in bytes per second (benchmarks).
    ignore_range : bool
        Answer Range requests with the whole file (200), as some servers do.
    no_head : bool
        Answer HEAD with 405.
    """

    seed: int = 0
    error_fraction: float = 0.0
    retry_after_fraction: float = 0.5
    retry_after_s: float = 1.0
    retry_after_date: bool = False
    truncate_fraction: float = 0.0
    stall_fraction: float = 0.0
    stall_s: float = 5.0
    fail_first: Mapping[str, int] = field(default_factory=dict)
    truncate_first: Mapping[str, int] = field(default_factory=dict)
    stall_first: Mapping[str, int] = field(default_factory=dict)
    corrupt: Iterable[str] = frozenset()
    corrupt_mode: str = "content"
    hide_script: bool = False
    bandwidth_bps: float | None = None
    ignore_range: bool = False
    no_head: bool = False


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (``t`` is :func:`time.monotonic`)."""

    t: float
    method: str
    path: str
    name: str | None
    range: str | None
    status: int
    outcome: str  # "ok", "partial", "503", "truncated", "stall", "404", "416", "405", "head"


class TinySector:
    """A stand-in for ``SimulatedSector`` with small FITS files (fast unit tests).

    Names follow the real pattern, 30-minute cadences from 2019-11-08 (sector 18's start).
    """

    def __init__(self, sector: int = 18, camera: int = 1, ccd: int = 3, n_cadences: int = 6,
                 shape: tuple[int, int] = (16, 20)) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace(sector=sector, camera=camera, ccd=ccd,
                                      n_cadences=n_cadences)
        self.shape = shape

    def ffi_filename(self, i: int) -> str:
        import datetime as dt

        t = dt.datetime(2019, 11, 8, 0, 59, 25) + dt.timedelta(minutes=30 * i)
        stamp = f"{t.year:04d}{t.timetuple().tm_yday:03d}{t:%H%M%S}"
        c = self.config
        return f"tess{stamp}-s{c.sector:04d}-{c.camera}-{c.ccd}-0162-s_ffic.fits"

    def ffi_bytes(self, i: int) -> bytes:
        import io

        import numpy as np
        from astropy.io import fits

        rng = np.random.default_rng(i)
        image = rng.normal(100, 5, self.shape).astype(np.float32)
        tstart = 1790.65 + i / 48
        hdr = fits.Header({"TSTART": tstart, "TSTOP": tstart + 1 / 48, "DQUALITY": 0,
                           "CAMERA": self.config.camera, "CCD": self.config.ccd})
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, hdr, name="CAMERA.CCD"),
                             fits.ImageHDU(np.ones(self.shape, np.float32))])
        buf = io.BytesIO()
        hdul.writeto(buf)
        return buf.getvalue()


@lru_cache(maxsize=4)
def simulated_sector(sector: int = 18, camera: int = 1, ccd: int = 3, n_stars: int = 200,
                     n_cadences: int = 12, seed: int = 1) -> Any:
    """A cached ``SimulatedSector`` (the same object for the same arguments)."""
    from tess_ffi.shared.simulation import SimulatedSector, SimulationConfig

    return SimulatedSector(SimulationConfig(sector=sector, camera=camera, ccd=ccd,
                                            n_stars=n_stars, n_cadences=n_cadences, seed=seed))


class _FrameCache:
    """LRU cache of rendered frames; one render per frame at a time, in a thread."""

    def __init__(self, render: Callable[[int], bytes], size: int) -> None:
        self._render = render
        self._size = max(1, size)
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self.renders = 0

    async def get(self, i: int) -> bytes:
        if i in self._frames:
            self._frames.move_to_end(i)
            return self._frames[i]
        lock = self._locks.setdefault(i, asyncio.Lock())
        async with lock:
            if i not in self._frames:
                data = await asyncio.to_thread(self._render, i)
                self.renders += 1
                self._frames[i] = data
                while len(self._frames) > self._size:
                    self._frames.popitem(last=False)
            else:
                self._frames.move_to_end(i)
            return self._frames[i]


class MastLikeServer:
    """An aiohttp server in the archive's layout serving one simulated camera/CCD.

    Parameters
    ----------
    sector : SimulatedSector or TinySector
        What to serve (see the module docstring for the duck type).
    faults : Faults, optional
        Fault injection; may be replaced or edited between phases of a test.
    cache_frames : int
        Rendered frames kept in memory.
    extra_script_lines : iterable of str
        Lines appended to the bulk script (e.g. a malicious ``curl`` line).
    chunk : int
        Bytes per write.

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:PORT/`` once started.
    names : list of str
        The served camera/CCD's FFI names in time order.
    log : list of RequestRecord
        Every request.
    completed, ranged : Counter
        Per name: full GETs sent completely (200), and Range GETs sent completely (206).
    injected : Counter
        Faults injected, by kind (``"503"``, ``"truncated"``, ``"stall"``).
    """

    def __init__(self, sector: Any, *, faults: Faults | None = None, cache_frames: int = 4,
                 extra_script_lines: Iterable[str] = (), chunk: int = 256 * 1024) -> None:
        self.sector = sector
        cfg = sector.config
        self.sector_number = int(cfg.sector)
        self.camera = int(cfg.camera)
        self.ccd = int(cfg.ccd)
        self.faults = faults or Faults()
        self.extra_script_lines = list(extra_script_lines)
        self.chunk = chunk
        self.names = [sector.ffi_filename(i) for i in range(int(cfg.n_cadences))]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.cache = _FrameCache(sector.ffi_bytes, cache_frames)
        self.log: list[RequestRecord] = []
        self.completed: Counter[str] = Counter()
        self.ranged: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> str:
        """Start on 127.0.0.1 (a free port); returns :attr:`base_url`."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/"
        return self.base_url

    async def close(self) -> None:
        """Stop serving; stalled responses are released at once."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MastLikeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what is served ----------------------------------------------------------------------
    def script_names(self) -> list[str]:
        """Every name in the bulk script: the served names for all 16 camera/CCDs."""
        out = []
        tag = f"-s{self.sector_number:04d}-{self.camera}-{self.ccd}-"
        for name in self.names:
            for cam in range(1, 5):
                for ccd in range(1, 5):
                    out.append(name.replace(tag, f"-s{self.sector_number:04d}-{cam}-{ccd}-", 1))
        return out

    def api_url(self, name: str) -> str:
        return f"{self.base_url}api/v0.1/Download/file/?uri=mast:TESS/product/{name}"

    def bulk_script(self) -> str:
        """The bulk script, in the real format and a seeded random order."""
        names = self.script_names()
        random.Random(f"{self.faults.seed}:script").shuffle(names)
        lines = ["#!/bin/sh"]
        lines += [f"curl -C - -L -o {n} {self.api_url(n)}" for n in names]
        lines += self.extra_script_lines
        return "\n".join(lines) + "\n"

    def archive_path(self, name: str) -> str:
        m = FFI_RE.match(name)
        assert m is not None, name
        t = m["time"]
        return (f"missions/tess/ffi/s{m['sector']}/{t[:4]}/{t[4:7]}/"
                f"{m['camera']}-{m['ccd']}/{name}")

    async def expected_bytes(self, name: str) -> bytes:
        """The bytes served for ``name`` when nothing goes wrong (corruption included)."""
        return self._maybe_corrupt(name, await self.cache.get(self.index[name]))

    def reset_counts(self) -> None:
        """Forget the request log and counters (the fault draws keep counting)."""
        self.log.clear()
        self.completed.clear()
        self.ranged.clear()
        self.injected.clear()

    def requests_for(self, name: str, method: str = "GET") -> list[RequestRecord]:
        return [r for r in self.log if r.name == name and r.method == method]

    # -- handlers ----------------------------------------------------------------------------
    def _record(self, request: web.Request, name: str | None, status: int, outcome: str,
                t: float) -> None:
        self.log.append(RequestRecord(t, request.method, request.path, name,
                                      request.headers.get("Range"), status, outcome))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        t = time.monotonic()
        path = request.path
        if request.method not in ("GET", "HEAD"):
            self._record(request, None, 405, "405", t)
            return web.Response(status=405)
        if path == API_PATH.rstrip("/") or path == API_PATH:
            uri = request.query.get("uri", "")
            prefix = "mast:TESS/product/"
            name = uri[len(prefix):] if uri.startswith(prefix) else ""
            return await self._serve_file(request, name, t)
        m = _SCRIPT_RE.match(path)
        if m:
            if int(m[1]) != self.sector_number or self.faults.hide_script:
                return self._not_found(request, None, t)
            self._record(request, None, 200, "ok", t)
            return web.Response(text=self.bulk_script(), content_type="text/x-sh")
        m = _FFI_TREE_RE.match(path)
        if m is None or int(m["sector"]) != self.sector_number:
            return self._not_found(request, None, t)
        if m["name"]:
            name = m["name"]
            if name in self.index and path.lstrip("/") == self.archive_path(name):
                return await self._serve_file(request, name, t)
            return self._not_found(request, name, t)
        if not path.endswith("/"):
            raise web.HTTPMovedPermanently(path + "/")
        return self._index_page(request, m, t)

    def _not_found(self, request: web.Request, name: str | None, t: float) -> web.Response:
        self._record(request, name, 404, "404", t)
        return web.Response(status=404, text="Not Found")

    def _index_page(self, request: web.Request, m: re.Match[str], t: float) -> web.Response:
        stamps = [FFI_RE.match(n)["time"] for n in self.names]  # type: ignore[index]
        if m["camccd"] is not None:
            if m["camccd"] != f"{self.camera}-{self.ccd}":
                return self._not_found(request, None, t)
            entries = [n for n, s in zip(self.names, stamps, strict=True)
                       if (s[:4], s[4:7]) == (m["year"], m["day"])]
        elif m["day"] is not None:
            has = any((s[:4], s[4:7]) == (m["year"], m["day"]) for s in stamps)
            entries = [f"{self.camera}-{self.ccd}/"] if has else []
        elif m["year"] is not None:
            entries = sorted({s[4:7] + "/" for s in stamps if s[:4] == m["year"]})
        else:
            entries = sorted({s[:4] + "/" for s in stamps})
        if not entries:
            return self._not_found(request, None, t)
        self._record(request, None, 200, "ok", t)
        rows = "\n".join(f'<a href="{e}">{e}</a>{" " * max(1, 50 - len(e))}2019-12-01 12:00  -'
                         for e in entries)
        html = (f"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html><head>"
                f"<title>Index of {request.path}</title></head><body>\n"
                f"<h1>Index of {request.path}</h1><pre>"
                f'<a href="?C=N;O=D">Name</a>  <a href="?C=M;O=A">Last modified</a>\n<hr>'
                f'<a href="/{request.path.strip("/").rsplit("/", 1)[0]}/">Parent Directory</a>\n'
                f"{rows}\n<hr></pre></body></html>\n")
        return web.Response(text=html, content_type="text/html")

    def _maybe_corrupt(self, name: str, data: bytes) -> bytes:
        if name not in set(self.faults.corrupt):
            return data
        buf = bytearray(data)
        if self.faults.corrupt_mode == "structure":
            buf[:9] = b"JUNK    ="
        else:
            at = buf.find(b"XTENSION=")
            at = at - at % 2880 if at >= 0 else 2880
            buf[at:at + 2880] = b" " * 2880
        return bytes(buf)

    def _draws(self, method: str, name: str) -> tuple[int, random.Random]:
        n = self._seen[(method, name)]
        self._seen[(method, name)] += 1
        return n, random.Random(f"{self.faults.seed}|{method}|{name}|{n}")

    def _retry_after(self, rng: random.Random) -> dict[str, str]:
        f = self.faults
        if rng.random() >= f.retry_after_fraction:
            return {}
        if f.retry_after_date:
            # HTTP dates have whole seconds: round up, and add one, so that the date is at
            # least retry_after_s + 1 seconds ahead when it is sent.
            when = math.ceil(time.time() + f.retry_after_s) + 1
            return {"Retry-After": email.utils.formatdate(when, usegmt=True)}
        return {"Retry-After": f"{f.retry_after_s:g}"}

    async def _serve_file(self, request: web.Request, name: str,
                          t: float) -> web.StreamResponse:
        if name not in self.index:
            return self._not_found(request, name or None, t)
        f = self.faults
        n, rng = self._draws(request.method, name)
        # A fixed number of draws per request keeps every decision stable.
        u_err, u_trunc, u_stall, u_cut = (rng.random() for _ in range(4))
        if n < f.fail_first.get(name, 0) or u_err < f.error_fraction:
            self.injected["503"] += 1
            self._record(request, name, 503, "503", t)
            return web.Response(status=503, text="Service Unavailable",
                                headers=self._retry_after(rng))
        if request.method == "HEAD" and f.no_head:
            self._record(request, name, 405, "405", t)
            return web.Response(status=405)
        data = self._maybe_corrupt(name, await self.cache.get(self.index[name]))
        size = len(data)
        start, end = 0, size  # end exclusive
        status = 200
        rng_header = request.headers.get("Range")
        if rng_header and not f.ignore_range:
            parsed = _parse_range(rng_header, size)
            if parsed is None:
                self._record(request, name, 416, "416", t)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "Last-Modified": "Sun, 01 Dec 2019 12:00:00 GMT"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        if request.method == "HEAD":
            await resp.prepare(request)
            await resp.write_eof()
            self._record(request, name, status, "head", t)
            return resp
        truncate = n < f.truncate_first.get(name, 0) or u_trunc < f.truncate_fraction
        stall = n < f.stall_first.get(name, 0) or u_stall < f.stall_fraction
        cut = start + int((end - start) * (0.1 + 0.8 * u_cut)) if truncate else end
        await resp.prepare(request)
        body = memoryview(data)
        pos = start
        sent_at = time.monotonic()
        try:
            while pos < cut:
                step = min(self.chunk, cut - pos)
                await resp.write(body[pos:pos + step])
                pos += step
                if stall:
                    stall = False
                    self.injected["stall"] += 1
                    self._record(request, name, status, "stall", t)
                    try:
                        await asyncio.wait_for(self._closing.wait(), f.stall_s)
                    except asyncio.TimeoutError:
                        pass
                    if self._closing.is_set():
                        return resp
                if f.bandwidth_bps:
                    due = sent_at + (pos - start) / f.bandwidth_bps
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
            if truncate:
                self.injected["truncated"] += 1
                self._record(request, name, status, "truncated", t)
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            # The client went away (for instance after its read timeout during a stall).
            return resp
        if status == 200:
            self.completed[name] += 1
            self._record(request, name, status, "ok", t)
        else:
            self.ranged[name] += 1
            self._record(request, name, status, "partial", t)
        return resp


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``bytes=`` range; None if unsatisfiable/invalid.

    >>> [_parse_range(r, 100) for r in ("bytes=10-", "bytes=-10", "bytes=5-9")]
    [(10, 100), (90, 100), (5, 10)]
    >>> _parse_range("bytes=100-", 100) is None
    True
    """
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if m is None or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":
        length = int(m[2])
        return (max(0, size - length), size) if length > 0 else None
    start = int(m[1])
    end = min(size, int(m[2]) + 1) if m[2] else size
    if start >= size or end <= start:
        return None
    return start, end


# --- pytest fixtures ----------------------------------------------------------------------


ServerFactory = Callable[..., Awaitable[MastLikeServer]]


@pytest.fixture(name="mast_server_factory")
async def mast_server_factory_fixture() -> AsyncIterator[ServerFactory]:
    """Start MAST-like servers in the test's loop; all are closed after the test.

    Call it as ``await mast_server_factory(sector_obj=None, *, faults=None, cache_frames=4,
    extra_script_lines=(), **sim)``: without ``sector_obj`` it serves the cached
    :func:`simulated_sector` built from ``sim`` (``sector``, ``camera``, ``ccd``,
    ``n_stars``, ``n_cadences``, ``seed``; defaults 18, 1, 3, 200, 12, 1).
    """
    servers: list[MastLikeServer] = []

    async def make(sector_obj: Any = None, *, faults: Faults | None = None,
                   cache_frames: int = 4, extra_script_lines: Iterable[str] = (),
                   **sim: Any) -> MastLikeServer:
        obj = sector_obj if sector_obj is not None else simulated_sector(**sim)
        server = MastLikeServer(obj, faults=faults, cache_frames=cache_frames,
                                extra_script_lines=extra_script_lines)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture(name="mast_server")
async def mast_server_fixture(mast_server_factory: ServerFactory) -> MastLikeServer:
    """A fault-free server of the default small simulated sector (18, camera 1, CCD 3)."""
    return await mast_server_factory()
