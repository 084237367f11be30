"""The legacy ``download`` path: keep a sector's calibrated FFIs on disk in MAST's layout.

Files land in ``data_dir/mast/missions/tess/ffi/s{SSSS}/{YYYY}/{DDD}/{cam}-{ccd}/NAME`` (the
year and day of year come from the time stamp in the name), which
:class:`~tess_ffi.services.fetcher.sources.PathSource` reads back (it searches recursively).

* A file already on disk whose size equals the archive's ``Content-Length`` (asked with
  ``HEAD``, or with a one-byte ``Range`` request where ``HEAD`` is refused) is skipped.
* A download goes to ``NAME.part``; an existing ``.part`` is resumed with
  ``Range: bytes=N-`` (unless ``job.no_resume``), and so is a body cut short during a retry.
  The ``.part`` is renamed to ``NAME`` atomically once it has the full length and passes
  :func:`~tess_ffi.shared.fits_io.check_fits_structure`; otherwise it is deleted and fetched
  again.
* Retries, backoff, timeouts and ``Retry-After`` are those of
  :class:`~tess_ffi.services.fetcher.mast.MastSource` (the same :func:`with_retries`).
* Names from the archive never leave the data folder: anything that does not match
  :data:`~tess_ffi.shared.fits_io.FFI_NAME_RE` (so anything with ``/`` or ``..``) is refused.

Examples
--------
>>> from pathlib import Path
>>> mast_path(Path("/data"), "tess2019312005925-s0018-1-3-0162-s_ffic.fits").as_posix()
'/data/mast/missions/tess/ffi/s0018/2019/312/1-3/tess2019312005925-s0018-1-3-0162-s_ffic.fits'
>>> mast_path(Path("/data"), "../../evil_ffic.fits")
Traceback (most recent call last):
...
tess_ffi.services.fetcher.sources.SourceError: refusing unsafe FFI name '../../evil_ffic.fits'
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from tess_ffi.shared.contracts import JobSpec
from tess_ffi.shared.fits_io import FFI_NAME_RE, MAX_FFI_BYTES, check_fits_structure

from .mast import (
    CHUNK,
    REQUEST_HEADERS,
    MastSource,
    TransientError,
    archive_dir,
    check_status,
)
from .sources import FFIEntry, SourceError

__all__ = ["DownloadSummary", "download_sector", "mast_path", "remote_size"]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


@dataclass
class DownloadSummary:
    """What :func:`download_sector` did.

    Attributes
    ----------
    job_id : str
        ``s{SSSS}-{cam}-{ccd}``.
    folder : Path
        Where the files are (``data_dir/mast/missions/tess/ffi/s{SSSS}``).
    listed, selected : int
        FFIs of the camera/CCD in the archive, and those kept after ``cadence_skip``.
    downloaded, resumed, skipped : list of str
        Names fetched from scratch, completed from a ``.part`` file, and already complete.
    failed : dict
        Name -> one-line reason, for files that could not be downloaded.
    refused : list of str
        Names in the archive's listing refused as unsafe or not calibrated FFI names.
    bytes : int
        Body bytes written.
    stats : dict
        The source's request statistics (see :func:`~tess_ffi.services.fetcher.mast.new_stats`).
    """

    job_id: str
    folder: Path
    listed: int = 0
    selected: int = 0
    downloaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    bytes: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every selected FFI is on disk."""
        return not self.failed


def mast_path(data_dir: Path, name: str) -> Path:
    """Where an FFI is kept under ``data_dir`` (MAST's layout); refuses unsafe names.

    Raises
    ------
    SourceError
        If ``name`` is not a calibrated FFI name or would land outside ``data_dir``.
    """
    if "/" in name or "\\" in name or ".." in name or FFI_NAME_RE.match(name) is None:
        raise SourceError(f"refusing unsafe FFI name {name!r}")
    root = Path(data_dir) / "mast"
    path = root / archive_dir(name) / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise SourceError(f"refusing FFI name {name!r}: it leaves {root}")
    return path


async def remote_size(source: MastSource, entry: FFIEntry) -> int | None:
    """The archive's size of an FFI: ``HEAD``'s Content-Length, or the total of a one-byte
    ``Range`` request's Content-Range when ``HEAD`` is refused or says nothing."""

    async def attempt(_: int) -> int | None:
        session = await source.session()
        timeout = source.policy.client_timeout()
        async with session.head(
            entry.location, headers=REQUEST_HEADERS, allow_redirects=True, timeout=timeout
        ) as resp:
            if resp.status not in (405, 501):
                check_status(resp, entry.name)
                if resp.content_length is not None:
                    return resp.content_length
        headers = {**REQUEST_HEADERS, "Range": "bytes=0-0"}
        async with session.get(entry.location, headers=headers, timeout=timeout) as resp:
            check_status(resp, entry.name)
            if resp.status == 206:
                total = _content_range(resp.headers.get("Content-Range"))[2]
                return total
            return resp.content_length

    return await source.retrying(attempt, entry.name)


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a Content-Range header; None for what it does not say.

    >>> _content_range("bytes 100-199/1000"), _content_range("bytes */1000")
    ((100, 199, 1000), (None, None, 1000))
    """
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if m is None:
        return None, None, None
    first = int(m[1]) if m[1] is not None else None
    last = int(m[2]) if m[2] is not None else None
    total = int(m[3]) if m[3] != "*" else None
    return first, last, total


def _validate_file(path: Path, name: str) -> None:
    """check_fits_structure on a finished ``.part`` file (read once; 35 MB is cheap next to
    downloading it)."""
    if path.stat().st_size > MAX_FFI_BYTES:
        raise SourceError(f"{name}: {path.stat().st_size} bytes is more than an FFI can be")
    check_fits_structure(path.read_bytes(), name=name)


async def _download_one(
    source: MastSource, entry: FFIEntry, target: Path, summary: DownloadSummary, resume: bool
) -> None:
    log = source.log.bind(name=entry.name)
    if target.exists():
        size = await remote_size(source, entry)
        if size is not None and target.stat().st_size == size:
            summary.skipped.append(entry.name)
            return
        log.info("size differs from the archive's: downloading again",
                 local=target.stat().st_size, remote=size)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    if part.exists() and (not resume or part.stat().st_size == 0):
        part.unlink()
    resumed = part.exists()
    written_total = 0

    async def attempt(_: int) -> None:
        nonlocal written_total
        offset = part.stat().st_size if part.exists() else 0
        headers = dict(REQUEST_HEADERS)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        session = await source.session()
        async with session.get(
            entry.location, headers=headers, timeout=source.policy.client_timeout()
        ) as resp:
            if resp.status == 416 and offset:
                total = _content_range(resp.headers.get("Content-Range"))[2]
                if total == offset:  # complete already: only the rename was missing
                    return await _finish(part, target, entry.name)
                part.unlink()
                raise TransientError("bad_range", f"HTTP 416 for bytes={offset}- (file {total})")
            check_status(resp, entry.name)
            if resp.status == 206:
                first, _last, total = _content_range(resp.headers.get("Content-Range"))
                if first != offset:
                    part.unlink()
                    raise TransientError("bad_range", f"asked bytes={offset}-, got {first}-")
                mode = "ab"
            else:  # the server ignored the Range header: start again
                offset, total, mode = 0, resp.content_length, "wb"
            if total is not None and total > MAX_FFI_BYTES:
                raise SourceError(f"{entry.name}: {total} bytes is more than an FFI can be")
            received = 0
            with part.open(mode) as f:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(f.write, chunk)
                    received += len(chunk)
                    written_total += len(chunk)
                    source.stats["bytes"] += len(chunk)
                    if offset + received > MAX_FFI_BYTES:
                        raise SourceError(f"{entry.name}: more than {MAX_FFI_BYTES} bytes")
            if total is not None and offset + received != total:
                raise TransientError(
                    "truncated", f"truncated body ({offset + received} of {total} bytes)"
                )
            await _finish(part, target, entry.name)

    await source.retrying(attempt, entry.name)
    source.stats["fetched"] += 1
    summary.bytes += written_total
    (summary.resumed if resumed else summary.downloaded).append(entry.name)


async def _finish(part: Path, target: Path, name: str) -> None:
    try:
        await asyncio.to_thread(_validate_file, part, name)
    except Exception:
        part.unlink(missing_ok=True)  # a complete but broken file: fetch it again
        raise
    os.replace(part, target)


async def download_sector(
    job: JobSpec,
    data_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    source: MastSource | None = None,
) -> DownloadSummary:
    """Download a sector/camera/CCD's calibrated FFIs into ``data_dir`` in MAST's layout.

    Parameters
    ----------
    job : JobSpec
        Sector, camera, CCD, ``cadence_skip``, ``workers``, ``mast_url``, ``no_resume``.
    data_dir : Path
        Data folder; files go under ``data_dir/mast/missions/tess/ffi/``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file (downloaded, skipped or failed).
    source : MastSource, optional
        The source to list and fetch with (its retry policy and statistics are used); by
        default ``MastSource(job)``, closed at the end. A given source is left open.

    Returns
    -------
    DownloadSummary
        Files downloaded, resumed, skipped, failed and refused. One file failing does not
        stop the others.

    Raises
    ------
    SourceError
        When the sector cannot be listed.
    """
    own = source is None
    src = source if source is not None else MastSource(job)
    log = structlog.get_logger("tess_ffi.fetcher.download").bind(job=job.job_id)
    summary = DownloadSummary(
        job_id=job.job_id,
        folder=Path(data_dir) / "mast" / "missions" / "tess" / "ffi" / f"s{job.sector:04d}",
    )
    try:
        entries = await src.list_ffis()
        summary.listed = len(entries)
        summary.refused = list(src.rejected)
        selected = entries[:: max(1, job.cadence_skip)]
        summary.selected = len(selected)
        log.info("downloading", listed=len(entries), selected=len(selected),
                 folder=str(summary.folder))
        queue: asyncio.Queue[FFIEntry] = asyncio.Queue()
        for entry in selected:
            queue.put_nowait(entry)
        done = 0

        async def worker() -> None:
            nonlocal done
            while True:
                try:
                    entry = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    target = mast_path(Path(data_dir), entry.name)
                    await _download_one(src, entry, target, summary, resume=not job.no_resume)
                except (SourceError, OSError) as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    summary.failed[entry.name] = reason[:500]
                    log.warning("download failed", name=entry.name, error=reason)
                done += 1
                if progress is not None:
                    progress(done, len(selected))

        await asyncio.gather(*(worker() for _ in range(max(1, job.workers))))
    finally:
        summary.stats = src.stats
        if own:
            await src.close()
    log.info("download finished", downloaded=len(summary.downloaded),
             resumed=len(summary.resumed), skipped=len(summary.skipped),
             failed=len(summary.failed), refused=len(summary.refused))
    return summary
