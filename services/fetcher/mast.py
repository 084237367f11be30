"""The MAST archive as an FFI source: list a sector's calibrated FFIs, stream them into memory.

Listing reads the archive's bulk-download script for the sector
(``missions/tess/download_scripts/sector/tesscurl_sector_{N}_ffic.sh``, one
``curl -C - -L -o NAME URL`` line per FFI, all 16 camera/CCDs mixed and not in time order),
keeps the job's camera/CCD and orders the names by their time stamp. When the script is
missing, the archive's directory listing (``missions/tess/ffi/s{SSSS}/{YYYY}/{DDD}/{cam}-{ccd}/``)
is walked instead.

Fetching streams each FITS file into a ``bytearray`` (nothing touches the disk) over at most
``job.workers`` concurrent connections, with retries for what is worth retrying: 5xx, 429 and
408 answers, timeouts, connection resets, truncated bodies (fewer bytes than
``Content-Length``, or a body that fails :func:`~tess_ffi.shared.fits_io.check_fits_structure`).
Waits between attempts are exponential with full jitter, and never shorter than a server's
``Retry-After`` (capped). A 404 is not retried.

Both archive hosts resolve against one base URL when one is given (``--mast-url``): the
``missions/`` tree and the API download endpoint
(``api/v0.1/Download/file/?uri=mast:TESS/product/NAME``, normally on mast.stsci.edu). The
retry machinery here (:func:`with_retries`, :func:`check_status`) is shared with the
``download`` command (:mod:`tess_ffi.services.fetcher.download`).

Examples
--------
>>> script = '''#!/bin/sh
... curl -C - -L -o tess2019312005925-s0018-1-3-0162-s_ffic.fits https://mast.stsci.edu/api/v0.1/Download/file/?uri=mast:TESS/product/tess2019312005925-s0018-1-3-0162-s_ffic.fits
... curl -C - -L -o ../../evil_ffic.fits https://example.org/evil
... '''
>>> pairs, rejected = parse_bulk_script(script)
>>> [name for name, _ in pairs], rejected
(['tess2019312005925-s0018-1-3-0162-s_ffic.fits'], ['../../evil_ffic.fits'])
>>> rebase_url(pairs[0][1], "http://127.0.0.1:8080/").split("?")[0]
'http://127.0.0.1:8080/api/v0.1/Download/file/'
>>> archive_dir("tess2019312005925-s0018-1-3-0162-s_ffic.fits")
'missions/tess/ffi/s0018/2019/312/1-3/'
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import structlog

from tess_ffi.shared.contracts import JobSpec
from tess_ffi.shared.fits_io import FFI_NAME_RE, MAX_FFI_BYTES, FITSError, check_fits_structure

from .sources import FFIEntry, FFISource, SourceError

__all__ = [
    "DEFAULT_MAST_URL",
    "MAST_HOSTS",
    "RetryPolicy",
    "TransientError",
    "NotFoundError",
    "MastSource",
    "with_retries",
    "check_status",
    "parse_retry_after",
    "parse_bulk_script",
    "parse_hrefs",
    "rebase_url",
    "bulk_script_path",
    "archive_dir",
    "validate_job",
    "new_stats",
]

#: The archive's base URL when the job names none.
DEFAULT_MAST_URL = "https://archive.stsci.edu/"
#: Hosts the bulk scripts point at; with the default base URL their URLs are used as they are.
MAST_HOSTS = frozenset({"archive.stsci.edu", "mast.stsci.edu"})
#: Largest text page (bulk script, directory index) read into memory.
MAX_TEXT_BYTES = 64 * 2**20
CHUNK = 1 << 20
USER_AGENT = "tess-ffi/0.1 (aiohttp)"
#: Sent with every request: FITS bodies are compared byte for byte with Content-Length.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}

T = TypeVar("T")


# --- retry machinery (shared with download.py) ----------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, backoff and per-request timeouts.

    Parameters
    ----------
    max_attempts : int
        Attempts per request, the first included.
    base_delay_s, max_delay_s : float
        The wait before attempt ``k + 1`` is uniform in ``[0, min(max_delay_s,
        base_delay_s * 2**(k - 1))]`` ("full jitter").
    retry_after_cap_s : float
        A server's ``Retry-After`` is honoured up to this many seconds.
    timeout_s : float
        Total time allowed for one request, body included.
    read_timeout_s : float
        Longest silence while waiting for headers or the next piece of the body.
    connect_timeout_s : float
        Time allowed to open a connection.

    Examples
    --------
    >>> p = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)
    >>> rng = random.Random(1)
    >>> all(0 <= p.backoff(k, rng) <= min(4.0, 2.0 ** (k - 1)) for k in range(1, 9))
    True
    """

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    retry_after_cap_s: float = 120.0
    timeout_s: float = 600.0
    read_timeout_s: float = 60.0
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), full jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, attempt - 1))
        return (rng or random).uniform(0.0, ceiling)

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """The aiohttp timeouts of one request."""
        return aiohttp.ClientTimeout(
            total=self.timeout_s,
            sock_connect=self.connect_timeout_s,
            sock_read=self.read_timeout_s,
        )


class TransientError(Exception):
    """One attempt failed in a way worth retrying.

    Parameters
    ----------
    reason : str
        Short key counted in ``stats["failures"]`` (``"http_503"``, ``"truncated"`` ...).
    detail : str
        One line for logs and for the final error message.
    retry_after : float or None
        Seconds the server asked us to wait, if it did.
    """

    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class NotFoundError(SourceError):
    """The archive answered 404 (or 410): not retried."""


def new_stats() -> dict[str, Any]:
    """An empty per-source statistics dict.

    Keys: ``requests`` (HTTP requests sent), ``retries`` (attempts repeated), ``bytes``
    (body bytes received, failed attempts included), ``fetched`` (files delivered),
    ``gave_up`` (requests abandoned after the last attempt) and ``failures`` (failed
    attempts by reason: ``http_503``, ``timeout``, ``truncated``, ``corrupt``,
    ``connection``, ``not_found`` ...).

    >>> new_stats()["failures"]
    {}
    """
    return {"requests": 0, "retries": 0, "bytes": 0, "fetched": 0, "gave_up": 0, "failures": {}}


def _count_failure(stats: dict[str, Any], reason: str) -> None:
    failures = stats.setdefault("failures", {})
    failures[reason] = failures.get(reason, 0) + 1


def _one_line(text: str, limit: int = 300) -> str:
    lines = str(text).strip().splitlines()
    return (lines[0] if lines else "")[:limit]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date).

    Returns None when the header is absent or unreadable; a date in the past gives 0.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("soon") is None, parse_retry_after(None) is None
    (True, True)
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def check_status(resp: aiohttp.ClientResponse, name: str) -> None:
    """Sort a response by its status: return for 2xx, raise otherwise.

    Raises
    ------
    NotFoundError
        404 or 410 (not retried).
    TransientError
        408, 429 and 5xx, with the ``Retry-After`` the server sent (retried).
    SourceError
        Any other status (not retried).
    """
    status = resp.status
    if 200 <= status < 300:
        return
    if status in (404, 410):
        raise NotFoundError(f"{name}: not found (HTTP {status}) at {resp.url}")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise TransientError(f"http_{status}", f"HTTP {status} {resp.reason or ''}".strip(),
                             retry_after)
    raise SourceError(f"{name}: HTTP {status} {resp.reason or ''} from {resp.url}".strip())


def _classify(exc: BaseException) -> TransientError | None:
    """The retryable failure an exception stands for, or None if it is not retryable."""
    if isinstance(exc, TransientError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TransientError("timeout", f"timed out ({_one_line(str(exc)) or type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransientError("truncated", f"truncated body ({_one_line(str(exc))})")
    if isinstance(exc, FITSError):
        return TransientError("corrupt", _one_line(str(exc)))
    if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError, aiohttp.ClientOSError)):
        return TransientError(
            "connection", f"connection failed ({_one_line(str(exc)) or type(exc).__name__})"
        )
    return None


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    name: str,
    policy: RetryPolicy,
    stats: dict[str, Any],
    limit: asyncio.Semaphore | None = None,
    log: Any = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run ``attempt(k)`` for k = 1, 2, ... until it succeeds or attempts run out.

    Each attempt holds ``limit`` (one connection slot) while it runs; the waits between
    attempts do not. Retryable failures are :class:`TransientError`, timeouts, truncated
    bodies (:class:`aiohttp.ClientPayloadError`), structurally broken FITS
    (:class:`~tess_ffi.shared.fits_io.FITSError`) and connection errors; anything else
    (a 404, a permanent HTTP error) propagates at once, other aiohttp errors as
    :class:`SourceError`.

    Parameters
    ----------
    attempt : callable
        Coroutine function making one request; receives the 1-based attempt number.
    name : str
        What is being fetched, for messages.
    policy : RetryPolicy
        Attempts and backoff.
    stats : dict
        Counters updated in place (see :func:`new_stats`).
    limit : asyncio.Semaphore, optional
        Bounds concurrent requests.
    log : structlog logger, optional
    rng : random.Random, optional
        Source of jitter (tests pass a seeded one).
    sleep : coroutine function
        Waits between attempts (``asyncio.sleep``).

    Raises
    ------
    SourceError
        ``"NAME: gave up after K attempts: <last reason>"`` when every attempt failed.

    Examples
    --------
    >>> calls = []
    >>> async def flaky(k):
    ...     calls.append(k)
    ...     if k < 3:
    ...         raise TransientError("http_503", "HTTP 503 Service Unavailable", retry_after=0)
    ...     return "ok"
    >>> stats = new_stats()
    >>> fast = RetryPolicy(base_delay_s=0.001)
    >>> asyncio.run(with_retries(flaky, name="x.fits", policy=fast, stats=stats))
    'ok'
    >>> calls, stats["retries"], stats["failures"]
    ([1, 2, 3], 2, {'http_503': 2})
    >>> async def broken(k):
    ...     raise TransientError("timeout", "timed out")
    >>> asyncio.run(with_retries(broken, name="x.fits", policy=RetryPolicy(2, 0.001),
    ...                          stats=stats))
    Traceback (most recent call last):
    ...
    tess_ffi.services.fetcher.sources.SourceError: x.fits: gave up after 2 attempts: timed out
    """
    last = "no attempt made"
    k = 0
    for k in range(1, policy.max_attempts + 1):
        stats["requests"] = stats.get("requests", 0) + 1
        try:
            if limit is None:
                return await attempt(k)
            async with limit:
                return await attempt(k)
        except NotFoundError:
            _count_failure(stats, "not_found")
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into retryable or not just below
            failure = _classify(exc)
            if failure is None:
                if isinstance(exc, SourceError):
                    raise
                _count_failure(stats, type(exc).__name__)
                if isinstance(exc, aiohttp.ClientError):  # e.g. a bad URL or redirect loop
                    raise SourceError(
                        f"{name}: {type(exc).__name__}: {_one_line(str(exc))}"
                    ) from exc
                raise
            _count_failure(stats, failure.reason)
            last = failure.detail
            if k == policy.max_attempts:
                break
            delay = policy.backoff(k, rng)
            if failure.retry_after is not None:
                delay = max(delay, min(failure.retry_after, policy.retry_after_cap_s))
            stats["retries"] = stats.get("retries", 0) + 1
            if log is not None:
                log.warning("retrying", name=name, attempt=k, reason=failure.reason,
                            error=last, delay_s=round(delay, 3))
            await sleep(delay)
    stats["gave_up"] = stats.get("gave_up", 0) + 1
    if log is not None:
        log.error("gave up", name=name, attempts=k, error=last)
    raise SourceError(f"{name}: gave up after {k} attempts: {last}")


# --- archive layout -------------------------------------------------------------------------


def bulk_script_path(sector: int) -> str:
    """Archive path of a sector's calibrated-FFI bulk script (N not zero-padded).

    >>> bulk_script_path(18)
    'missions/tess/download_scripts/sector/tesscurl_sector_18_ffic.sh'
    """
    return f"missions/tess/download_scripts/sector/tesscurl_sector_{int(sector)}_ffic.sh"


def archive_dir(name: str) -> str:
    """Archive folder of an FFI: ``missions/tess/ffi/s{SSSS}/{YYYY}/{DDD}/{cam}-{ccd}/``.

    Raises
    ------
    SourceError
        If ``name`` is not a calibrated FFI name.
    """
    m = FFI_NAME_RE.match(name)
    if m is None:
        raise SourceError(f"not a calibrated FFI name: {name!r}")
    t = m["time"]
    return f"missions/tess/ffi/s{m['sector']}/{t[:4]}/{t[4:7]}/{m['camera']}-{m['ccd']}/"


def validate_job(job: JobSpec) -> None:
    """Refuse a job whose sector, camera, CCD or worker count cannot exist (one line).

    >>> validate_job(JobSpec(sector=18, camera=5, ccd=1))
    Traceback (most recent call last):
    ...
    tess_ffi.services.fetcher.sources.SourceError: invalid job: camera must be 1-4, got 5
    """
    checks = (
        ("sector", job.sector, 1, 9999),
        ("camera", job.camera, 1, 4),
        ("ccd", job.ccd, 1, 4),
        ("workers", job.workers, 1, 1024),
        ("cadence_skip", job.cadence_skip, 1, 10**6),
    )
    for label, value, low, high in checks:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SourceError(f"invalid job: {label} must be {low}-{high}, got {value!r}")


def _normalise_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"MAST URL must be an http(s) URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def rebase_url(url: str, base: str) -> str:
    """``url`` moved onto ``base``: its path and query kept, its scheme and host replaced.

    The path is resolved under ``base`` (a base with a path prefix keeps it), so a mirror
    at ``http://host/mirror/`` receives ``/mirror/api/v0.1/...``.

    >>> rebase_url("https://mast.stsci.edu/api/v0.1/Download/file/?uri=mast:TESS/product/x",
    ...            "http://127.0.0.1:9/mirror/")
    'http://127.0.0.1:9/mirror/api/v0.1/Download/file/?uri=mast:TESS/product/x'
    """
    parts = urlsplit(url)
    rebased = base + parts.path.lstrip("/")
    return f"{rebased}?{parts.query}" if parts.query else rebased


def parse_bulk_script(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``(name, url)`` pairs of a bulk-download script, and the names refused.

    Lines that are not ``curl`` commands are ignored. A name is refused when it does not
    match :data:`~tess_ffi.shared.fits_io.FFI_NAME_RE` (so it can hold no ``/`` or ``..``).
    """
    pairs: list[tuple[str, str]] = []
    rejected: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("curl "):
            continue
        if any(c in line for c in "'\"\\"):
            try:
                args = shlex.split(line)
            except ValueError:
                continue
        else:  # the usual line: plain words (shlex is 20 times slower on 17,712 lines)
            args = line.split()
        name = url = None
        i = 1
        while i < len(args):
            arg = args[i]
            if arg in ("-o", "--output") and i + 1 < len(args):
                name = args[i + 1]
                i += 2
                continue
            if arg.startswith(("http://", "https://")):
                url = arg
            i += 1
        if name is None or url is None:
            continue
        if FFI_NAME_RE.match(name) is None:
            rejected.append(name)
            continue
        pairs.append((name, url))
    return pairs, rejected


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for key, value in attrs:
                if key.lower() == "href" and value:
                    self.hrefs.append(value)


def parse_hrefs(html: str) -> list[str]:
    """Last path component of every ``<a href>`` of an index page (query and fragment dropped).

    >>> parse_hrefs('<a href="../">up</a><a href="2019/">2019/</a><a href="/x/s0018/2020/">')
    ['..', '2019', '2020']
    """
    parser = _LinkParser()
    parser.feed(html)
    out = []
    for href in parser.hrefs:
        path = urlsplit(href).path.rstrip("/")
        out.append(unquote(path.rsplit("/", 1)[-1]))
    return out


# --- the source -----------------------------------------------------------------------------


class MastSource(FFISource):
    """Calibrated FFIs of one sector/camera/CCD streamed from the MAST archive into memory.

    Parameters
    ----------
    job : JobSpec
        Sector, camera, CCD, ``workers`` (concurrent connections) and ``mast_url``.
    base_url : str, optional
        Archive base URL; default ``job.mast_url``, else :data:`DEFAULT_MAST_URL`. When a base
        URL is given, every URL of the bulk script is moved onto it (see :func:`rebase_url`);
        with the default, script URLs on the MAST hosts are used as they are.
    session : aiohttp.ClientSession, optional
        Shared session (left open by :meth:`close`); by default one is created.
    max_attempts : int
        Attempts per request.
    timeout_s : float
        Total time allowed per request.
    read_timeout_s : float
        Longest silence while reading one response.
    policy : RetryPolicy, optional
        Full retry/backoff policy; overrides the three arguments above.
    rng : random.Random, optional
        Jitter source (for reproducible tests).

    Attributes
    ----------
    stats : dict
        Requests, retries, bytes, files fetched, failures by reason (:func:`new_stats`).
    rejected : list of str
        Names in the bulk script that were refused (not calibrated FFI names).
    listing : str or None
        ``"bulk_script"`` or ``"directory"``: how the last :meth:`list_ffis` found the FFIs.

    Notes
    -----
    :meth:`fetch` checks that the body is as long as ``Content-Length`` and passes
    :func:`~tess_ffi.shared.fits_io.check_fits_structure` (SIMPLE card, whole 2880-byte
    blocks, an END card); a body failing either is retried and, if it never passes,
    ends in ``SourceError("NAME: gave up after K attempts: ...")``. A file that is
    structurally sound but corrupt inside is returned as it is: parsing it
    (:func:`~tess_ffi.shared.fits_io.read_calibrated_ffi`) raises ``FITSError`` in the caller.
    """

    def __init__(
        self,
        job: JobSpec,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_attempts: int = 6,
        timeout_s: float = 600.0,
        read_timeout_s: float = 60.0,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(job)
        validate_job(job)
        given = base_url or job.mast_url
        self.base_url = _normalise_base(given or DEFAULT_MAST_URL)
        self._rebase_all = bool(given)
        self.policy = policy or RetryPolicy(
            max_attempts=max_attempts, timeout_s=timeout_s, read_timeout_s=read_timeout_s
        )
        self._session = session
        self._own_session = session is None
        self._limit = asyncio.Semaphore(job.workers)
        self._rng = rng
        self.stats: dict[str, Any] = new_stats()
        self.rejected: list[str] = []
        self.listing: str | None = None
        self.log = structlog.get_logger("tess_ffi.fetcher.mast").bind(
            job=job.job_id, base_url=self.base_url
        )

    # -- plumbing ----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """An archive path resolved against the base URL."""
        return urljoin(self.base_url, path.lstrip("/"))

    def location_of(self, script_url: str) -> str:
        """Where to fetch a URL found in a bulk script (see the class notes)."""
        host = (urlsplit(script_url).hostname or "").lower()
        if not self._rebase_all and host in MAST_HOSTS:
            return script_url
        return rebase_url(script_url, self.base_url)

    async def session(self) -> aiohttp.ClientSession:
        """The HTTP session (created on first use, inside the running loop)."""
        if self._session is None or (self._own_session and self._session.closed):
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.job.workers + 2),
                timeout=self.policy.client_timeout(),
                headers={"User-Agent": USER_AGENT, **REQUEST_HEADERS},
            )
            self._own_session = True
        return self._session

    async def retrying(self, attempt: Callable[[int], Awaitable[T]], name: str) -> T:
        """:func:`with_retries` with this source's policy, stats, connection limit and log."""
        return await with_retries(
            attempt, name=name, policy=self.policy, stats=self.stats, limit=self._limit,
            log=self.log, rng=self._rng,
        )

    async def get_text(self, url: str, *, name: str) -> str:
        """A text page (bulk script, index page), with retries; NotFoundError on 404."""

        async def attempt(_: int) -> str:
            session = await self.session()
            async with session.get(
                url, headers=REQUEST_HEADERS, timeout=self.policy.client_timeout()
            ) as resp:
                check_status(resp, name)
                body = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    body += chunk
                    self.stats["bytes"] += len(chunk)
                    if len(body) > MAX_TEXT_BYTES:
                        raise SourceError(f"{name}: more than {MAX_TEXT_BYTES} bytes at {url}")
                _check_length(resp, len(body))
                return body.decode(resp.charset or "utf-8", errors="replace")

        return await self.retrying(attempt, name)

    # -- listing -----------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        m = FFI_NAME_RE.match(name)
        return m is not None and (int(m["sector"]), int(m["camera"]), int(m["ccd"])) == (
            self.job.sector, self.job.camera, self.job.ccd,
        )

    async def list_ffis(self) -> list[FFIEntry]:
        """The job's FFIs in time order (cadence = position), from the bulk script or the
        directory listing.

        Raises
        ------
        SourceError
            ``"sector N: no calibrated FFIs found at <base> (...)"`` when neither the script
            nor the folders list any FFI of the job's camera/CCD.
        """
        job = self.job
        found: dict[str, str] = {}
        script_url = self.url(bulk_script_path(job.sector))
        why: list[str] = []
        script_missing = False
        try:
            text = await self.get_text(script_url, name=f"sector {job.sector} bulk script")
        except NotFoundError:
            script_missing = True
            why.append(f"no bulk script {bulk_script_path(job.sector)}")
        else:
            pairs, rejected = await asyncio.to_thread(parse_bulk_script, text)
            self.rejected = rejected
            if rejected:
                self.log.warning("bulk script names refused", count=len(rejected),
                                 first=rejected[0][:200])
            for name, url in pairs:
                if self._wanted(name):
                    found.setdefault(name, self.location_of(url))
            if found:
                self.listing = "bulk_script"
            else:
                why.append(f"bulk script lists {len(pairs)} FFIs, none of camera "
                           f"{job.camera} CCD {job.ccd}")
        if not found:
            self.log.info("listing the archive folders", reason="; ".join(why))
            found, why_dir, folder_missing = await self._list_directories()
            if found:
                self.listing = "directory"
            else:
                why.append(why_dir)
        if not found:
            sector_missing = script_missing and folder_missing
            what = "" if sector_missing else f" of camera {job.camera} CCD {job.ccd}"
            raise SourceError(
                f"sector {job.sector}: no calibrated FFIs{what} found at {self.base_url} "
                f"({'; '.join(why)})"
            )
        names = sorted(found, key=lambda n: (FFI_NAME_RE.match(n)["time"], n))  # type: ignore[index]
        self.log.info("listed", ffis=len(names), via=self.listing)
        return [FFIEntry(i, name, found[name]) for i, name in enumerate(names)]

    async def _list_directories(self) -> tuple[dict[str, str], str, bool]:
        """FFIs found by walking the folders, why none were found, whether the sector folder
        itself is missing."""
        job = self.job
        top_path = f"missions/tess/ffi/s{job.sector:04d}/"
        try:
            top = await self.get_text(self.url(top_path), name=f"sector {job.sector} folder")
        except NotFoundError:
            return {}, f"no folder {top_path}", True
        years = [h for h in parse_hrefs(top) if re.fullmatch(r"\d{4}", h)]
        day_urls: list[str] = []
        for year in sorted(set(years)):
            year_url = self.url(f"{top_path}{year}/")
            try:
                page = await self.get_text(year_url, name=f"folder {top_path}{year}/")
            except NotFoundError:
                continue
            days = sorted({h for h in parse_hrefs(page) if re.fullmatch(r"\d{3}", h)})
            day_urls += [f"{year_url}{day}/{job.camera}-{job.ccd}/" for day in days]

        async def one_day(url: str) -> dict[str, str]:
            try:
                page = await self.get_text(url, name=f"folder {url}")
            except NotFoundError:
                return {}
            # Locations are built from the validated name, never from the href itself.
            return {h: url + h for h in parse_hrefs(page) if self._wanted(h)}

        found: dict[str, str] = {}
        for part in await asyncio.gather(*(one_day(u) for u in day_urls)):
            found.update(part)
        if not found:
            return {}, (f"folder {top_path} has {len(day_urls)} day folders, no FFI of camera "
                        f"{job.camera} CCD {job.ccd}"), False
        return found, "", False

    # -- fetching ----------------------------------------------------------------------------
    async def fetch(self, entry: FFIEntry) -> bytes:
        """The whole FITS file, streamed into memory, with retries.

        Raises
        ------
        NotFoundError
            The archive answered 404 (a :class:`SourceError`; not retried).
        SourceError
            ``"NAME: gave up after K attempts: <last reason>"``, or a permanent HTTP error.
        """
        log = self.log.bind(name=entry.name, cadence=entry.cadence)

        async def attempt(k: int) -> bytes:
            session = await self.session()
            async with session.get(
                entry.location, headers=REQUEST_HEADERS, timeout=self.policy.client_timeout()
            ) as resp:
                check_status(resp, entry.name)
                expected = resp.content_length
                if expected is not None and expected > MAX_FFI_BYTES:
                    raise SourceError(f"{entry.name}: {expected} bytes is more than an FFI can be")
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    buf += chunk
                    self.stats["bytes"] += len(chunk)
                    if len(buf) > MAX_FFI_BYTES:
                        raise SourceError(f"{entry.name}: more than {MAX_FFI_BYTES} bytes")
                _check_length(resp, len(buf))
                check_fits_structure(buf, name=entry.name)  # type: ignore[arg-type]
                return bytes(buf)

        data = await with_retries(
            attempt, name=entry.name, policy=self.policy, stats=self.stats, limit=self._limit,
            log=log, rng=self._rng,
        )
        self.stats["fetched"] += 1
        return data

    async def close(self) -> None:
        """Close the HTTP session if this source created it."""
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _check_length(resp: aiohttp.ClientResponse, received: int) -> None:
    """TransientError("truncated") when fewer (or more) bytes came than Content-Length said."""
    expected = resp.content_length
    encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
    if expected is not None and not encoded and received != expected:
        raise TransientError("truncated", f"truncated body ({received} of {expected} bytes)")
