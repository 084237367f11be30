"""Catalog enrichment of variable-star candidates: TIC (MAST) and VSX (VizieR).

Candidates are clustered on the sky and each cluster is asked for with **one** cone search
that covers all its members plus the blend-check aperture, so a field of a few hundred
candidates costs a handful of queries rather than one per star. Every cone's answer is kept
in a Parquet cache (one file per rounded cone), so a re-run asks nothing twice; a cached cone
that contains a requested one answers for it too. Queries are rate limited, and retried with
exponential backoff; when MAST stays unreachable the job still completes, enriched from local
catalog files when some are configured (status ``"offline"``) or with null TIC columns
(status ``"unenriched"``).

The functions are synchronous (astroquery uses ``requests``); the enricher service runs
:func:`enrich_candidates` in a worker thread.

Examples
--------
Offline enrichment from a small CSV catalog (no network is touched):

>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "stars.csv").write_text(
...     "id,ra,dec,Tmag,teff\\n101,10.0,-5.0,11.2,5800\\n102,10.005,-5.0,9.5,6100\\n")
>>> cands = pd.DataFrame({"star_id": [1, 2], "ra": [10.0001, 30.0], "dec": [-5.0, -5.0],
...                       "tmag": [11.0, 12.0]})
>>> config = EnrichmentConfig(tmp / "cache", offline=True, catalog_files=(tmp / "stars.csv",))
>>> out, status = enrich_candidates(cands, config)
>>> status, out["tic_id"].tolist(), out["tic_teff"].tolist()[0]
('offline', [101, <NA>], 5800.0)
>>> out["n_brighter_neighbours"].tolist(), out["known"].tolist()
([1, 0], [<NA>, <NA>])
"""

from __future__ import annotations

import functools
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from tess_ffi.shared.storage import atomic_write_table

__all__ = [
    "EnrichmentConfig",
    "Cone",
    "CatalogUnavailable",
    "enrich_candidates",
    "cluster_positions",
    "read_catalog_files",
    "ENRICHMENT_COLUMNS",
    "TIC_CACHE_COLUMNS",
    "VSX_CATALOG",
    "VSX_COLUMNS",
]

log = structlog.get_logger("tess_ffi.enricher.tic")

#: Columns :func:`enrich_candidates` adds, with their pandas dtypes.
ENRICHMENT_COLUMNS: dict[str, str] = {
    "tic_id": "Int64",
    "tic_tmag": "float64",
    "tic_teff": "float64",
    "tic_sep_arcsec": "float64",
    "n_brighter_neighbours": "Int64",
    "vsx_name": "string",
    "vsx_type": "string",
    "vsx_period": "float64",
    "known": "boolean",
}
#: TIC columns kept (in the cache) from each cone's answer.
TIC_CACHE_COLUMNS = ("ID", "ra", "dec", "Tmag", "Teff")
#: The VizieR table of the AAVSO International Variable Star indeX.
VSX_CATALOG = "B/vsx/vsx"
#: VSX columns asked for (and cached).
VSX_COLUMNS = ("Name", "RAJ2000", "DEJ2000", "Type", "Period")

_TIC_SCHEMA = pa.schema(
    [("ID", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()),
     ("Tmag", pa.float64()), ("Teff", pa.float64())]
)
_VSX_SCHEMA = pa.schema(
    [("Name", pa.string()), ("RAJ2000", pa.float64()), ("DEJ2000", pa.float64()),
     ("Type", pa.string()), ("Period", pa.float64())]
)
_KEY_RE = re.compile(r"^(?P<ra>\d{3}\.\d{4})(?P<dec>[+-]\d{2}\.\d{4})r(?P<r>\d+)$")
_T = TypeVar("_T")


class CatalogUnavailable(RuntimeError):
    """A catalog service could not answer, even after retries."""


@dataclass(frozen=True)
class EnrichmentConfig:
    """How candidates are enriched.

    Parameters
    ----------
    cache_dir
        Parquet cache of cone answers (``tic/`` and ``vsx/`` below it); a re-run asks nothing
        twice.
    offline
        Never touch the network: use ``catalog_files`` (else a cache that covers every cone).
    catalog_files
        Local catalogs (Parquet, or CSV) with columns ``id``, ``ra``, ``dec``, ``Tmag`` (or
        ``tmag``) and optionally ``teff``; used offline or when MAST is unreachable.
    mast_server
        Base URL of the MAST portal (e.g. ``"http://127.0.0.1:PORT"``); None = astroquery's
        default (``https://mast.stsci.edu``).
    vizier_server
        VizieR host (``"vizier.cds.unistra.fr"``) or base URL with a scheme
        (``"http://127.0.0.1:PORT"``); None = astroquery's default.
    radius_arcsec
        Match radius (one TESS pixel).
    aperture_arcsec
        Blend-check radius: TIC stars brighter than the match within it are counted.
    max_queries_per_s
        Rate limit per server (process-wide).
    max_attempts
        Attempts per cone before the service is declared unreachable.
    max_cone_deg
        Largest cone radius; larger clusters are split.
    backoff_s
        First retry delay; doubled on each further retry (with jitter, capped at 30 s).
    timeout_s
        Per-HTTP-request timeout.
    """

    cache_dir: Path
    offline: bool = False
    catalog_files: tuple[Path, ...] = ()
    mast_server: str | None = None
    vizier_server: str | None = None
    radius_arcsec: float = 21.0
    aperture_arcsec: float = 42.0
    max_queries_per_s: float = 2.0
    max_attempts: int = 4
    max_cone_deg: float = 0.5
    backoff_s: float = 0.5
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        object.__setattr__(self, "catalog_files", tuple(Path(p) for p in self.catalog_files))
        if self.radius_arcsec <= 0 or self.aperture_arcsec <= 0:
            raise ValueError("radius_arcsec and aperture_arcsec must be positive")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_cone_deg <= 0:
            raise ValueError(f"max_cone_deg must be positive, got {self.max_cone_deg}")


@dataclass(frozen=True)
class Cone:
    """A cone search: center (deg, ICRS) and radius (whole arcsec).

    The center is rounded to 1e-4 deg and the radius is a whole number of arcseconds, so the
    same field always gives the same cache key.

    >>> cone = Cone.around(254.378937, -4.09411, 600.2)
    >>> cone, cone.key
    (Cone(ra=254.3789, dec=-4.0941, radius_arcsec=602), '254.3789-04.0941r602')
    >>> Cone.from_key(cone.key) == cone
    True
    >>> Cone(254.3789, -4.0941, 900).covers(cone), cone.covers(Cone(254.3789, -4.0941, 900))
    (True, False)
    """

    ra: float
    dec: float
    radius_arcsec: int

    @classmethod
    def around(cls, ra: float, dec: float, radius_arcsec: float) -> Cone:
        """The rounded cone that contains the cone (``ra``, ``dec``, ``radius_arcsec``)."""
        rra = round(float(ra) % 360.0, 4) % 360.0
        rdec = min(90.0, max(-90.0, round(float(dec), 4)))
        # Rounding the center moves it by at most 0.26"; one extra arcsecond keeps it covering.
        return cls(rra, rdec, int(math.ceil(radius_arcsec + 1.0)))

    @property
    def key(self) -> str:
        """Cache key (and file stem)."""
        return f"{self.ra:08.4f}{self.dec:+08.4f}r{self.radius_arcsec:d}"

    @classmethod
    def from_key(cls, key: str) -> Cone | None:
        """Parse :attr:`key`; None when it is not one."""
        m = _KEY_RE.match(key)
        if m is None:
            return None
        return cls(float(m["ra"]), float(m["dec"]), int(m["r"]))

    def separation_arcsec(self, other: Cone) -> float:
        """Angle between the two centers."""
        return float(_angles_arcsec(_unit(self.ra, self.dec), _unit([other.ra], [other.dec]))[0])

    def covers(self, other: Cone) -> bool:
        """True when ``other`` lies entirely inside this cone."""
        return self.separation_arcsec(other) + other.radius_arcsec <= self.radius_arcsec + 1e-6


# -- geometry ----------------------------------------------------------------------------------

def _unit(ra: Any, dec: Any) -> npt.NDArray[np.float64]:
    ra_r = np.radians(np.asarray(ra, dtype=float))
    dec_r = np.radians(np.asarray(dec, dtype=float))
    return np.stack(
        [np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)], axis=-1
    )


def _angles_arcsec(
    center: npt.NDArray[np.float64], xyz: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Angles (arcsec) between one unit vector and many (atan2 form: exact at small angles)."""
    cross = np.linalg.norm(np.cross(xyz, center), axis=-1)
    dot = xyz @ center
    return np.degrees(np.arctan2(cross, dot)) * 3600.0


def _radec(v: npt.NDArray[np.float64]) -> tuple[float, float]:
    v = v / np.linalg.norm(v)
    ra = math.degrees(math.atan2(v[1], v[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, float(v[2])))))
    return ra, dec


def cluster_positions(
    ra: Sequence[float] | npt.ArrayLike,
    dec: Sequence[float] | npt.ArrayLike,
    *,
    pad_arcsec: float,
    max_radius_deg: float = 0.5,
) -> list[tuple[Cone, npt.NDArray[np.intp]]]:
    """Group positions into cones: each cone holds its members plus ``pad_arcsec`` around them.

    Greedy clustering: from the southernmost unassigned position, take every unassigned
    position within reach, move the center to their mean (a few times), and cut a cone whose
    radius, padding included, never exceeds ``max_radius_deg``. Every position ends in exactly
    one cone, and lies at least ``pad_arcsec`` inside it.

    Parameters
    ----------
    ra, dec
        Positions in degrees (finite).
    pad_arcsec
        Margin around every member (the largest search radius used around a candidate).
    max_radius_deg
        Largest cone radius; wider groups are split.

    Returns
    -------
    list of (Cone, member indices)

    Examples
    --------
    >>> groups = cluster_positions([10.0, 10.01, 10.02, 50.0], [0.0, 0.0, 0.01, 0.0],
    ...                            pad_arcsec=42.0)
    >>> [(members.tolist(), cone.radius_arcsec) for cone, members in groups]
    [([0, 1, 2], 87), ([3], 43)]
    >>> len(cluster_positions([10.0, 11.0], [0.0, 0.0], pad_arcsec=42.0, max_radius_deg=0.5))
    2
    """
    ra_a = np.asarray(ra, dtype=float).ravel()
    dec_a = np.asarray(dec, dtype=float).ravel()
    if ra_a.shape != dec_a.shape:
        raise ValueError("ra and dec differ in length")
    if not (np.all(np.isfinite(ra_a)) and np.all(np.isfinite(dec_a))):
        raise ValueError("positions must be finite")
    xyz = _unit(ra_a, dec_a)
    # Members lie within `reach` of the center; 1" more is kept for the rounding of the cone.
    reach = max(0.0, max_radius_deg * 3600.0 - pad_arcsec - 2.0)
    unassigned = np.ones(len(ra_a), dtype=bool)
    groups: list[tuple[Cone, npt.NDArray[np.intp]]] = []
    for seed in np.lexsort((ra_a, dec_a)):
        if not unassigned[seed]:
            continue
        free = np.flatnonzero(unassigned)
        center = xyz[seed]
        members = free[_angles_arcsec(center, xyz[free]) <= reach]
        for _ in range(3):  # mean shift: centering the cone gathers more of the group
            shifted = xyz[members].mean(axis=0)
            shifted /= np.linalg.norm(shifted)
            near = free[_angles_arcsec(shifted, xyz[free]) <= reach]
            if seed not in near:
                break
            center, members = shifted, near
        # The tightest center for the final members, if it keeps them within reach.
        tight = xyz[members].mean(axis=0)
        tight /= np.linalg.norm(tight)
        seps = _angles_arcsec(tight, xyz[members])
        if seps.max() > reach:
            tight, seps = center, _angles_arcsec(center, xyz[members])
        c_ra, c_dec = _radec(tight)
        groups.append((Cone.around(c_ra, c_dec, float(seps.max()) + pad_arcsec), members))
        unassigned[members] = False
    return groups


# -- matching ----------------------------------------------------------------------------------

def _pairs(
    ra1: npt.NDArray[np.float64], dec1: npt.NDArray[np.float64],
    ra2: npt.NDArray[np.float64], dec2: npt.NDArray[np.float64], radius_arcsec: float,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """All pairs (i in 1, j in 2) closer than ``radius_arcsec``, with their separations."""
    if len(ra1) == 0 or len(ra2) == 0:
        empty = np.array([], dtype=np.intp)
        return empty, empty, np.array([], dtype=float)
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    c1 = SkyCoord(ra1 * u.deg, dec1 * u.deg)
    c2 = SkyCoord(ra2 * u.deg, dec2 * u.deg)
    i1, i2, d2d, _ = search_around_sky(c1, c2, radius_arcsec * u.arcsec)
    return np.asarray(i1, dtype=np.intp), np.asarray(i2, dtype=np.intp), d2d.to_value(u.arcsec)


def _nearest(
    n: int, i1: npt.NDArray[np.intp], i2: npt.NDArray[np.intp], sep: npt.NDArray[np.float64],
    radius_arcsec: float,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Index (or -1) and separation (or NaN) of each row's nearest partner within radius."""
    idx = np.full(n, -1, dtype=np.intp)
    best = np.full(n, np.nan)
    ok = sep <= radius_arcsec
    if ok.any():
        frame = pd.DataFrame({"i": i1[ok], "j": i2[ok], "sep": sep[ok]})
        frame = frame.sort_values(["i", "sep", "j"]).drop_duplicates("i")
        idx[frame["i"].to_numpy()] = frame["j"].to_numpy()
        best[frame["i"].to_numpy()] = frame["sep"].to_numpy()
    return idx, best


def _apply_stars(
    out: pd.DataFrame, rows: npt.NDArray[np.intp], stars: pd.DataFrame, config: EnrichmentConfig
) -> None:
    """Fill the TIC columns of ``out`` (at positional ``rows``) from a star table."""
    ra = out["ra"].to_numpy(dtype=float)[rows]
    dec = out["dec"].to_numpy(dtype=float)[rows]
    n = len(rows)
    reach = max(config.radius_arcsec, config.aperture_arcsec)
    i1, i2, sep = _pairs(ra, dec, stars["ra"].to_numpy(float), stars["dec"].to_numpy(float), reach)
    match, best = _nearest(n, i1, i2, sep, config.radius_arcsec)
    ok = match >= 0
    star_tmag = stars["tmag"].to_numpy(dtype=float)
    tmag = np.full(n, np.nan)
    tmag[ok] = star_tmag[match[ok]]
    # Blend warning: stars within the aperture brighter than the match (than the candidate's
    # own magnitude when nothing matched).
    ref = tmag.copy()
    if "tmag" in out.columns:
        own = pd.to_numeric(out["tmag"], errors="coerce").to_numpy(dtype=float)[rows]
        ref = np.where(ok, ref, own)
    in_aperture = sep <= config.aperture_arcsec
    brighter = in_aperture & (i2 != match[i1]) & (star_tmag[i2] < ref[i1])
    counts = np.bincount(i1[brighter], minlength=n)

    total = len(out)
    ids = np.zeros(total, dtype=np.int64)
    id_ok = np.zeros(total, dtype=bool)
    ids[rows[ok]] = stars["id"].to_numpy(dtype=np.int64)[match[ok]]
    id_ok[rows[ok]] = True
    out["tic_id"] = pd.arrays.IntegerArray(ids, ~id_ok)
    out["tic_tmag"] = _scatter(total, rows, tmag)
    teff = np.full(n, np.nan)
    teff[ok] = stars["teff"].to_numpy(dtype=float)[match[ok]]
    out["tic_teff"] = _scatter(total, rows, teff)
    out["tic_sep_arcsec"] = _scatter(total, rows, best)
    nb = np.zeros(total, dtype=np.int64)
    nb_ok = np.zeros(total, dtype=bool)
    nb[rows] = counts
    nb_ok[rows] = np.isfinite(ref)
    out["n_brighter_neighbours"] = pd.arrays.IntegerArray(nb, ~nb_ok)


def _scatter(
    total: int, rows: npt.NDArray[np.intp], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    full = np.full(total, np.nan)
    full[rows] = values
    return full


def _apply_vsx(
    out: pd.DataFrame, rows: npt.NDArray[np.intp], vsx: pd.DataFrame, config: EnrichmentConfig
) -> None:
    """Fill the VSX columns of ``out`` (at positional ``rows``); unmatched rows are not known."""
    ra = out["ra"].to_numpy(dtype=float)[rows]
    dec = out["dec"].to_numpy(dtype=float)[rows]
    i1, i2, sep = _pairs(
        ra, dec, vsx["RAJ2000"].to_numpy(float), vsx["DEJ2000"].to_numpy(float),
        config.radius_arcsec,
    )
    match, _ = _nearest(len(rows), i1, i2, sep, config.radius_arcsec)
    ok = match >= 0
    total = len(out)
    known = np.zeros(total, dtype=bool)
    checked = np.zeros(total, dtype=bool)
    known[rows[ok]] = True
    checked[rows] = True
    out["known"] = pd.arrays.BooleanArray(known, ~checked)
    names = np.full(total, None, dtype=object)
    types = np.full(total, None, dtype=object)
    names[rows[ok]] = vsx["Name"].to_numpy(object)[match[ok]]
    types[rows[ok]] = vsx["Type"].to_numpy(object)[match[ok]]
    out["vsx_name"] = pd.array(names, dtype="string")
    out["vsx_type"] = pd.array(types, dtype="string")
    period = np.full(len(rows), np.nan)
    period[ok] = vsx["Period"].to_numpy(dtype=float)[match[ok]]
    out["vsx_period"] = _scatter(total, rows, period)


# -- local catalogs ----------------------------------------------------------------------------

def read_catalog_files(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Read local catalogs into one table with columns ``id``, ``ra``, ``dec``, ``tmag``, ``teff``.

    Parquet (``.parquet``, ``.pq``) or CSV files; column names are matched case-insensitively
    (``Tmag``/``tmag``, ``teff``/``Teff``; ``teff`` is optional). Duplicated ids keep their
    first row.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cat.csv"
    >>> _ = path.write_text("ID,RA,Dec,Tmag\\n7,1.5,2.5,10.25\\n")
    >>> read_catalog_files([path]).to_dict("records")
    [{'id': 7, 'ra': 1.5, 'dec': 2.5, 'tmag': 10.25, 'teff': nan}]
    """
    frames = []
    for path in map(Path, paths):
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path)
        by_lower = {str(c).lower(): c for c in raw.columns}
        missing = [c for c in ("id", "ra", "dec", "tmag") if c not in by_lower]
        if missing:
            raise ValueError(f"catalog {path} lacks columns {missing}")
        frames.append(
            _star_frame(
                raw[by_lower["id"]], raw[by_lower["ra"]], raw[by_lower["dec"]],
                raw[by_lower["tmag"]], raw[by_lower["teff"]] if "teff" in by_lower else None,
            )
        )
    if not frames:
        return _star_frame([], [], [], [], None)
    stars = pd.concat(frames, ignore_index=True)
    return stars.drop_duplicates("id").reset_index(drop=True)


def _star_frame(ids: Any, ra: Any, dec: Any, tmag: Any, teff: Any | None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": pd.array(pd.to_numeric(pd.Series(ids), errors="coerce"), dtype="Int64"),
            "ra": pd.to_numeric(pd.Series(ra), errors="coerce").astype(float).to_numpy(),
            "dec": pd.to_numeric(pd.Series(dec), errors="coerce").astype(float).to_numpy(),
            "tmag": pd.to_numeric(pd.Series(tmag), errors="coerce").astype(float).to_numpy(),
        }
    )
    frame["teff"] = (
        np.nan if teff is None
        else pd.to_numeric(pd.Series(teff), errors="coerce").astype(float).to_numpy()
    )
    frame = frame[frame["ra"].notna() & frame["dec"].notna() & frame["id"].notna()]
    return frame.reset_index(drop=True)


# -- cache -------------------------------------------------------------------------------------

class _ConeCache:
    """One Parquet file per cone under ``root``; a cached cone covering a request answers it."""

    def __init__(self, root: Path, schema: pa.Schema) -> None:
        self.root = root
        self.schema = schema
        self._index: dict[Cone, Path] | None = None

    def _cones(self) -> dict[Cone, Path]:
        if self._index is None:
            self._index = {}
            if self.root.is_dir():
                for path in self.root.glob("*.parquet"):
                    cone = Cone.from_key(path.stem)
                    if cone is not None:
                        self._index[cone] = path
        return self._index

    def get(self, cone: Cone) -> pd.DataFrame | None:
        index = self._cones()
        found = [cone] if cone in index else []
        if not found:
            found = sorted((c for c in index if c.covers(cone)), key=lambda c: c.radius_arcsec)
        for cached in found:
            try:
                table = pq.read_table(index[cached])
                return table.cast(self.schema).to_pandas()
            except Exception as exc:  # a damaged file is a miss; it is rewritten on fetch
                log.warning("catalog cache file unreadable", path=str(index[cached]),
                            error=str(exc))
                index.pop(cached, None)
        return None

    def put(self, cone: Cone, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        path = self.root / f"{cone.key}.parquet"
        atomic_write_table(table, path)
        self._cones()[cone] = path


# -- rate limiting and retries -----------------------------------------------------------------

class _RateLimiter:
    """Spaces request starts at least ``1/rate`` seconds apart (thread-safe)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


_LIMITERS: dict[tuple[str, float], _RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def _limiter(server: str, rate: float) -> _RateLimiter:
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((server, rate), _RateLimiter(rate))


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _call_with_retries(
    fn: Callable[[], _T], *, what: str, config: EnrichmentConfig, limiter: _RateLimiter,
    counter: dict[str, int],
) -> _T:
    """Call ``fn`` with rate limiting and exponential backoff; CatalogUnavailable at the end."""
    delay = config.backoff_s
    for attempt in range(1, config.max_attempts + 1):
        limiter.wait()
        counter["queries"] = counter.get("queries", 0) + 1
        try:
            return fn()
        except Exception as exc:
            status = _http_status(exc)
            permanent = status is not None and 400 <= status < 500 and status not in (408, 425, 429)
            if permanent or attempt == config.max_attempts:
                raise CatalogUnavailable(
                    f"{what} failed after {attempt} attempt(s): {type(exc).__name__}: {exc}"
                ) from exc
            wait = delay * (1.0 + 0.25 * random.random())
            hinted = _retry_after(exc)
            if hinted is not None:
                wait = max(wait, min(hinted, 60.0))
            log.warning("catalog query failed, retrying", what=what, attempt=attempt,
                        error=f"{type(exc).__name__}: {exc}", retry_in_s=round(wait, 2))
            time.sleep(wait)
            delay = min(delay * 2.0, 30.0)
    raise AssertionError("unreachable")  # pragma: no cover


def _mount_timeout(session: Any, timeout_s: float) -> None:
    """Give every request of a ``requests`` session a default timeout (astroquery's MAST
    portal calls pass none)."""
    from requests.adapters import HTTPAdapter

    class _TimeoutAdapter(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout_s
            return super().send(request, **kwargs)

    adapter = _TimeoutAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


# -- TIC and VSX clients -----------------------------------------------------------------------

#: MAST column configurations, per server, shared by all clients (fetched once per process).
_COL_CONFIGS: dict[str, dict[str, Any]] = {}


class _TicSource:
    """``Catalogs.query_region(..., catalog="TIC")`` against the configured MAST portal."""

    def __init__(self, config: EnrichmentConfig) -> None:
        self.config = config
        self._client: Any = None

    def _make_client(self) -> Any:
        from astroquery.mast import CatalogsClass
        from astroquery.mast import conf as mast_conf

        client = CatalogsClass()
        portal = client._portal_api_connection
        server = (self.config.mast_server or mast_conf.server).rstrip("/")
        # The portal URLs are class attributes fixed at import time; set them per instance.
        portal.MAST_REQUEST_URL = f"{server}/api/v0/invoke"
        portal.COLUMNS_CONFIG_URL = f"{server}/portal/Mashup/Mashup.asmx/columnsconfig"
        portal._column_configs = _COL_CONFIGS.setdefault(server, {})
        portal.TIMEOUT = self.config.timeout_s * self.config.max_attempts
        _mount_timeout(portal._session, self.config.timeout_s)
        return client

    @property
    def server(self) -> str:
        return self.config.mast_server or "mast"

    def __call__(self, cone: Cone) -> pd.DataFrame:
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        from astroquery.exceptions import NoResultsWarning

        if self._client is None:
            self._client = self._make_client()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoResultsWarning)
            table = self._client.query_region(
                SkyCoord(cone.ra * u.deg, cone.dec * u.deg),
                radius=cone.radius_arcsec * u.arcsec, catalog="TIC",
            )
        if len(table) == 0:
            return _TIC_SCHEMA.empty_table().to_pandas()
        missing = [c for c in TIC_CACHE_COLUMNS if c not in table.colnames]
        if missing:
            raise ValueError(f"TIC answer lacks columns {missing}")
        cols = {c: _column_values(table[c]) for c in TIC_CACHE_COLUMNS}
        return pd.DataFrame(
            {
                "ID": pd.to_numeric(pd.Series(cols["ID"]), errors="coerce").astype("Int64"),
                "ra": pd.to_numeric(pd.Series(cols["ra"]), errors="coerce").astype(float),
                "dec": pd.to_numeric(pd.Series(cols["dec"]), errors="coerce").astype(float),
                "Tmag": pd.to_numeric(pd.Series(cols["Tmag"]), errors="coerce").astype(float),
                "Teff": pd.to_numeric(pd.Series(cols["Teff"]), errors="coerce").astype(float),
            }
        ).dropna(subset=["ID", "ra", "dec"]).reset_index(drop=True)


def _column_values(column: Any) -> list[Any]:
    """An astropy column as a list with masked entries as None."""
    mask = np.asarray(getattr(column, "mask", np.zeros(len(column), dtype=bool)), dtype=bool)
    values = list(np.asarray(column).tolist())
    if mask.shape == (len(values),):
        values = [None if m else v for v, m in zip(values, mask, strict=True)]
    return [v.decode() if isinstance(v, bytes) else v for v in values]


_VIZIER_CLASS: Any = None


def _vizier_class() -> Any:
    """VizierClass that also accepts a base URL with a scheme (``http://host:port``)."""
    global _VIZIER_CLASS
    if _VIZIER_CLASS is None:
        from astroquery.vizier import VizierClass

        class _Vizier(VizierClass):  # type: ignore[misc, valid-type]
            def _server_to_url(self, return_type: str = "votable") -> str:
                if "://" in self.VIZIER_SERVER:
                    return f"{self.VIZIER_SERVER.rstrip('/')}/viz-bin/{return_type}"
                return str(super()._server_to_url(return_type=return_type))

        _VIZIER_CLASS = _Vizier
    return _VIZIER_CLASS


class _VsxSource:
    """``Vizier.query_region(..., catalog="B/vsx/vsx")`` against the configured VizieR."""

    def __init__(self, config: EnrichmentConfig) -> None:
        self.config = config
        self._client: Any = None

    @property
    def server(self) -> str:
        return self.config.vizier_server or "vizier"

    def __call__(self, cone: Cone) -> pd.DataFrame:
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        if self._client is None:
            kwargs: dict[str, Any] = {
                "columns": list(VSX_COLUMNS), "catalog": VSX_CATALOG, "row_limit": -1,
                "timeout": self.config.timeout_s,
            }
            if self.config.vizier_server:
                kwargs["vizier_server"] = self.config.vizier_server
            self._client = _vizier_class()(**kwargs)
            _mount_timeout(self._client._session, self.config.timeout_s)
        response = self._client.query_region_async(
            SkyCoord(cone.ra * u.deg, cone.dec * u.deg),
            radius=cone.radius_arcsec * u.arcsec, catalog=VSX_CATALOG, cache=False,
        )
        response.raise_for_status()
        tables = self._client._parse_result(response)
        if tables is None:
            raise ValueError(f"unexpected VizieR answer: {response.content[:80]!r}")
        if VSX_CATALOG not in tables.keys():
            return _VSX_SCHEMA.empty_table().to_pandas()
        table = tables[VSX_CATALOG]
        missing = [c for c in VSX_COLUMNS if c not in table.colnames]
        if missing:
            raise ValueError(f"VSX answer lacks columns {missing}")
        cols = {c: _column_values(table[c]) for c in VSX_COLUMNS}
        return pd.DataFrame(
            {
                "Name": pd.Series(cols["Name"], dtype=object),
                "RAJ2000": pd.to_numeric(pd.Series(cols["RAJ2000"]), errors="coerce").astype(float),
                "DEJ2000": pd.to_numeric(pd.Series(cols["DEJ2000"]), errors="coerce").astype(float),
                "Type": pd.Series(cols["Type"], dtype=object),
                "Period": pd.to_numeric(pd.Series(cols["Period"]), errors="coerce").astype(float),
            }
        ).dropna(subset=["RAJ2000", "DEJ2000"]).reset_index(drop=True)


# -- orchestration -----------------------------------------------------------------------------

@dataclass
class _Gathered:
    frame: pd.DataFrame | None
    error: str | None = None
    cached: int = 0
    fetched: int = 0
    counter: dict[str, int] = field(default_factory=dict)


def _gather(
    cones: list[Cone], cache: _ConeCache, source: _TicSource | _VsxSource | None,
    config: EnrichmentConfig, what: str, dedupe: Sequence[str],
) -> _Gathered:
    """Every cone's rows, from the cache or (when ``source`` is given) the service.

    Stops at the first cone the service cannot answer (the service is down: asking the
    others would only spend each one's retries). Without a source, a cone missing from the
    cache makes the whole answer None.
    """
    result = _Gathered(frame=None)
    frames = []
    limiter = _limiter(source.server, config.max_queries_per_s) if source is not None else None
    for cone in cones:
        frame = cache.get(cone)
        if frame is not None:
            result.cached += 1
        elif source is None or limiter is None:
            result.error = "not cached"
            return result
        else:
            try:
                frame = _call_with_retries(
                    functools.partial(source, cone), what=f"{what} cone {cone.key}",
                    config=config, limiter=limiter, counter=result.counter,
                )
            except CatalogUnavailable as exc:
                result.error = str(exc)
                return result
            try:
                cache.put(cone, frame)
            except OSError as exc:  # an unwritable cache costs a re-query later, not the job
                log.warning("catalog cache not written", cone=cone.key, error=str(exc))
            result.fetched += 1
        frames.append(frame)
    non_empty = [f for f in frames if len(f)]
    if non_empty:
        merged = pd.concat(non_empty, ignore_index=True)
        result.frame = merged.drop_duplicates(list(dedupe)).reset_index(drop=True)
    elif frames:
        result.frame = frames[0]
    return result


def enrich_candidates(
    candidates: pd.DataFrame, config: EnrichmentConfig
) -> tuple[pd.DataFrame, str]:
    """Add TIC and VSX information to candidates.

    Parameters
    ----------
    candidates
        Table with at least ``ra`` and ``dec`` (deg); a ``tmag`` column, if any, is the
        reference magnitude of the blend check for stars without a TIC match.
    config
        Where to cache, which servers, offline or not.

    Returns
    -------
    (DataFrame, str)
        A copy of ``candidates`` (same index and order) with the columns of
        :data:`ENRICHMENT_COLUMNS`: ``tic_id``, ``tic_tmag``, ``tic_teff``, ``tic_sep_arcsec``
        (nearest TIC star within ``radius_arcsec``), ``n_brighter_neighbours`` (TIC stars
        within ``aperture_arcsec`` brighter than the match: a blend warning), ``vsx_name``,
        ``vsx_type``, ``vsx_period`` and ``known`` (True: a VSX star lies within
        ``radius_arcsec``; False: none does, a new variable; NA: VSX could not be consulted).
        The status is ``"tic"`` (TIC from MAST or its cache), ``"offline"`` (offline mode or
        MAST unreachable, from ``catalog_files`` or, offline without files, a cache covering
        every cone) or ``"unenriched"`` (TIC columns left null). ``DataFrame.attrs
        ["enrichment"]`` holds the details (VSX status, cones, queries made).

    Notes
    -----
    Never raises for an unreachable service: a warning is logged and the status says so.
    """
    out = candidates.copy()
    for name, dtype in ENRICHMENT_COLUMNS.items():
        out[name] = pd.Series(pd.NA if dtype != "float64" else np.nan, index=out.index, dtype=dtype)
    missing = {"ra", "dec"} - set(out.columns)
    if missing:
        raise ValueError(f"candidates lack columns {sorted(missing)}")
    ra = pd.to_numeric(out["ra"], errors="coerce").to_numpy(dtype=float)
    dec = pd.to_numeric(out["dec"], errors="coerce").to_numpy(dtype=float)
    rows = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    pad = max(config.radius_arcsec, config.aperture_arcsec)
    groups = cluster_positions(
        ra[rows], dec[rows], pad_arcsec=pad, max_radius_deg=config.max_cone_deg
    )
    cones = [cone for cone, _ in groups]
    details: dict[str, Any] = {"cones": len(cones), "tic_queries": 0, "vsx_queries": 0}

    # TIC -------------------------------------------------------------------------------------
    tic_cache = _ConeCache(config.cache_dir / "tic", _TIC_SCHEMA)
    stars: pd.DataFrame | None = None
    status = "unenriched"
    if not len(rows):
        status = "offline" if config.offline else "tic"
    elif config.offline:
        stars, status = _local_stars(config, tic_cache, cones)
    else:
        got = _gather(cones, tic_cache, _TicSource(config), config, "TIC", ["ID"])
        details["tic_queries"] = got.counter.get("queries", 0)
        details["tic_cached_cones"], details["tic_fetched_cones"] = got.cached, got.fetched
        if got.frame is not None:
            stars, status = _tic_stars(got.frame), "tic"
        else:
            fallback = "catalog files" if config.catalog_files else "none"
            log.warning("MAST unreachable, TIC enrichment degraded", error=got.error,
                        fallback=fallback, candidates=len(out), server=config.mast_server)
            stars, status = _local_stars(config, None, cones)
    if stars is not None and len(rows):
        _apply_stars(out, rows, stars, config)

    # VSX -------------------------------------------------------------------------------------
    vsx_cache = _ConeCache(config.cache_dir / "vsx", _VSX_SCHEMA)
    vsx_status = "unavailable"
    if len(rows):
        source = None if config.offline else _VsxSource(config)
        got = _gather(cones, vsx_cache, source, config, "VSX", ["Name", "RAJ2000", "DEJ2000"])
        details["vsx_queries"] = got.counter.get("queries", 0)
        if got.frame is not None:
            _apply_vsx(out, rows, got.frame, config)
            vsx_status = "cache" if config.offline else "vsx"
        elif not config.offline:
            log.warning("VizieR unreachable, VSX cross-match skipped", error=got.error,
                        candidates=len(out), server=config.vizier_server)
    details.update(tic=status, vsx=vsx_status)
    out.attrs["enrichment"] = details
    return out, status


def _tic_stars(frame: pd.DataFrame) -> pd.DataFrame:
    return _star_frame(frame["ID"], frame["ra"], frame["dec"], frame["Tmag"], frame["Teff"])


def _local_stars(
    config: EnrichmentConfig, cache: _ConeCache | None, cones: list[Cone]
) -> tuple[pd.DataFrame | None, str]:
    """Stars without the network: catalog files first, else (offline) a covering cache."""
    if config.catalog_files:
        try:
            return read_catalog_files(config.catalog_files), "offline"
        except (OSError, ValueError) as exc:
            log.warning("local catalog unreadable, TIC columns left empty", error=str(exc))
            return None, "unenriched"
    if cache is not None:
        got = _gather(cones, cache, None, config, "TIC", ["ID"])
        if got.frame is not None:
            return _tic_stars(got.frame), "offline"
        log.warning("offline without catalog files or a complete TIC cache: "
                    "TIC columns left empty", cache_dir=str(config.cache_dir))
    return None, "unenriched"
