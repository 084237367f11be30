"""Where FFIs come from: a simulated sector in memory, or a folder of calibrated FFI files.

A source lists a sector's FFIs for one camera/CCD in time order (the position in that list is
the cadence number) and fetches one FFI's bytes. Nothing is written to disk.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tess_ffi.shared.contracts import JobSpec
from tess_ffi.shared.fits_io import FFI_NAME_RE

__all__ = ["FFIEntry", "FFISource", "SimSource", "PathSource", "SourceError", "open_source"]


class SourceError(ValueError):
    """The source cannot list the requested sector/camera/CCD (one clear line)."""


@dataclass(frozen=True)
class FFIEntry:
    cadence: int
    name: str
    location: str  # a URL, a path or a simulated frame index


class FFISource(ABC):
    def __init__(self, job: JobSpec) -> None:
        self.job = job

    @abstractmethod
    async def list_ffis(self) -> list[FFIEntry]:
        """All FFIs of the job's sector/camera/CCD, ordered by time, cadence = position."""

    @abstractmethod
    async def fetch(self, entry: FFIEntry) -> bytes:
        """The whole FITS file, in memory."""

    async def close(self) -> None:
        return None


class SimSource(FFISource):
    """A simulated sector (:mod:`tess_ffi.shared.simulation`), rendered frame by frame."""

    @cached_property
    def sector(self):  # type: ignore[no-untyped-def]
        from tess_ffi.shared.simulation import SimulatedSector, simulation_config

        return SimulatedSector(simulation_config(self.job))

    async def list_ffis(self) -> list[FFIEntry]:
        sim = await asyncio.to_thread(lambda: self.sector)
        n = sim.config.n_cadences
        return [FFIEntry(i, sim.ffi_filename(i), str(i)) for i in range(n)]

    async def fetch(self, entry: FFIEntry) -> bytes:
        return await asyncio.to_thread(self.sector.ffi_bytes, int(entry.location))


class PathSource(FFISource):
    """Calibrated FFI files in a folder (searched recursively, as ``download`` lays them)."""

    def __init__(self, job: JobSpec, root: Path) -> None:
        super().__init__(job)
        self.root = root

    async def list_ffis(self) -> list[FFIEntry]:
        if not self.root.is_dir():
            raise SourceError(f"source folder {self.root} does not exist or is not a folder")
        matches = []
        for path in sorted(self.root.rglob("*_ffic.fits")):
            m = FFI_NAME_RE.match(path.name)
            if m is None:
                continue
            if (int(m["sector"]), int(m["camera"]), int(m["ccd"])) != (
                self.job.sector, self.job.camera, self.job.ccd,
            ):
                continue
            matches.append((m["time"], path))
        if not matches:
            raise SourceError(
                f"no calibrated FFIs of sector {self.job.sector} camera {self.job.camera} "
                f"CCD {self.job.ccd} in {self.root}"
            )
        matches.sort()
        return [FFIEntry(i, p.name, str(p)) for i, (_, p) in enumerate(matches)]

    async def fetch(self, entry: FFIEntry) -> bytes:
        return await asyncio.to_thread(Path(entry.location).read_bytes)


def open_source(job: JobSpec) -> FFISource:
    """The source a job names: ``sim``, ``mast`` or a folder path."""
    if job.source == "sim":
        return SimSource(job)
    if job.source == "mast":
        from .mast import MastSource

        return MastSource(job)
    return PathSource(job, Path(job.source))
