"""Message contracts: the only place where message bodies are built or parsed.

Every message is a frozen dataclass with a schema name and a version. On the wire a body is

``MAGIC`` (4 bytes) | header length (4 bytes, big endian) | JSON header | binary blobs

The JSON header holds the schema, the version and every scalar field; numpy arrays, Arrow
tables and raw bytes travel as binary blobs after it (Arrow tables as Arrow IPC streams, so
per-FFI photometry is columnar end to end). Blobs may be compressed with zstd; numpy arrays are
byte-shuffled first, which makes noisy float32 images compress about twice as well.

Examples
--------
>>> import numpy as np
>>> job = JobSpec(sector=1, camera=1, ccd=1, source="sim")
>>> msg = FFIPhotometry(job=job, cadence=3, btjd=1325.5, dquality=0,
...                     table=photometry_table(np.array([1, 2]), flux=np.array([10., 20.])))
>>> back = decode_message(msg.encode())
>>> back.cadence, back.table.column("flux").to_pylist()
(3, [10.0, 20.0])
"""

from __future__ import annotations

import dataclasses
import json
import struct
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "ContractError",
    "Topic",
    "Route",
    "JobSpec",
    "Message",
    "JobRequest",
    "JobPlan",
    "ReferenceImage",
    "StarCatalog",
    "FFIImage",
    "FFIPhotometry",
    "FetchManifest",
    "StarLightCurve",
    "StarVariability",
    "Candidate",
    "JobEvent",
    "ROUTES",
    "MESSAGE_TYPES",
    "decode_message",
    "photometry_table",
    "star_catalog_table",
    "PHOTOMETRY_SCHEMA",
    "APERTURE_RADII",
    "STORED_PHOTOMETRY_SCHEMA",
    "STORED_PHOTOMETRY_COLUMNS",
    "STAR_SCHEMA",
]

MAGIC = b"TFF1"
_HEADER = struct.Struct(">I")


class ContractError(ValueError):
    """A body that is not a valid message of a known schema and version (a poison message)."""


class Topic(str, Enum):
    """Routing keys. Each topic is delivered to one durable queue per subscriber group."""

    JOBS = "jobs"
    PLANS = "plans"
    REFERENCE = "reference"
    CATALOGS = "catalogs"
    FFI = "ffi"
    PHOTOMETRY = "photometry"
    MANIFESTS = "manifests"
    LIGHTCURVES = "lightcurves"
    VARIABILITY = "variability"
    CANDIDATES = "candidates"
    EVENTS = "events"


@dataclass(frozen=True)
class Route:
    """How a topic travels.

    ``groups`` are the subscriber groups with a durable queue each (every group gets every
    message; the consumers within a group share the work). ``persistent`` messages survive a
    broker restart; images are transient because the fetcher can always fetch them again and
    because writing 35 MB per FFI to the broker's disk would bound the pipeline by that disk.
    ``max_length`` bounds the queue: publishers are refused (and wait) when it is full, which
    is the backpressure that keeps the fetcher a bounded number of images ahead.
    ``mandatory`` publishes fail loudly when no queue is bound.
    """

    topic: Topic
    groups: tuple[str, ...]
    persistent: bool = True
    max_length: int | None = None
    mandatory: bool = True


ROUTES: dict[Topic, Route] = {
    Topic.JOBS: Route(Topic.JOBS, ("aggregator",)),
    Topic.PLANS: Route(Topic.PLANS, ("fetcher",)),
    Topic.REFERENCE: Route(Topic.REFERENCE, ("photometer",), persistent=False, max_length=4),
    # Fetchers also listen, each on a private queue: the one waiting for this job's star list
    # must get it, whichever of several fetchers that is.
    Topic.CATALOGS: Route(Topic.CATALOGS, ("aggregator",)),
    Topic.FFI: Route(Topic.FFI, ("photometer",), persistent=False, max_length=8),
    Topic.PHOTOMETRY: Route(Topic.PHOTOMETRY, ("aggregator",)),
    Topic.MANIFESTS: Route(Topic.MANIFESTS, ("aggregator",)),
    Topic.LIGHTCURVES: Route(Topic.LIGHTCURVES, ("analyzer",)),
    Topic.VARIABILITY: Route(Topic.VARIABILITY, ("enricher",)),
    # Informational streams: listeners come and go, nobody has to be bound.
    Topic.CANDIDATES: Route(Topic.CANDIDATES, (), mandatory=False),
    Topic.EVENTS: Route(Topic.EVENTS, (), persistent=False, mandatory=False),
}


@dataclass(frozen=True)
class JobSpec:
    """What a job is: carried by every message so each one can be handled on its own."""

    sector: int
    camera: int
    ccd: int
    source: str = "mast"
    cadence_skip: int = 1
    workers: int = 4
    mast_url: str | None = None
    no_resume: bool = False
    offline: bool = False
    sim: dict[str, Any] = field(default_factory=dict)
    #: Known bad intervals (BTJD start, stop), e.g. scattered light from a sector's data
    #: release notes: the light-curve cleaning flags their cadences ``BAD_EPOCH``.
    exclude_windows: list[tuple[float, float]] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def job_id(self) -> str:
        """Stable identity of the data product (resuming a run keeps it)."""
        return f"s{self.sector:04d}-{self.camera}-{self.ccd}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


M = TypeVar("M", bound="Message")


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every contract. Subclasses set SCHEMA, VERSION and TOPIC."""

    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[Topic]

    job: JobSpec

    @property
    def route(self) -> Route:
        return ROUTES[self.TOPIC]

    def message_id(self) -> str:
        """Identity used for de-duplication and logging."""
        return f"{self.SCHEMA}:{self.job.job_id}:{self.job.run_id}"

    # -- encoding -------------------------------------------------------------------------
    def encode(self, *, compression: str | None = None) -> bytes:
        """Serialise to bytes; ``compression`` is None or ``"zstd"`` for the binary blobs."""
        scalars: dict[str, Any] = {}
        blobs: list[bytes] = []
        blob_meta: list[dict[str, Any]] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, JobSpec):
                scalars[f.name] = value.to_json()
            elif isinstance(value, (np.ndarray, pa.Table, bytes)):
                raw, meta = _encode_blob(value, compression)
                meta["field"] = f.name
                blobs.append(raw)
                blob_meta.append(meta)
            else:
                scalars[f.name] = value
        header = json.dumps(
            {"schema": self.SCHEMA, "v": self.VERSION, "fields": scalars, "blobs": blob_meta},
            separators=(",", ":"),
            allow_nan=True,
        ).encode()
        return b"".join([MAGIC, _HEADER.pack(len(header)), header, *blobs])

    @classmethod
    def _from_parts(cls: type[M], fields_: dict[str, Any]) -> M:
        fields_ = dict(fields_)
        fields_["job"] = JobSpec.from_json(fields_["job"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields_) - known
        if unknown:
            raise ContractError(f"{cls.SCHEMA} v{cls.VERSION}: unknown fields {sorted(unknown)}")
        try:
            return cls(**fields_)
        except TypeError as exc:
            raise ContractError(f"{cls.SCHEMA} v{cls.VERSION}: {exc}") from None


def _shuffle(arr: np.ndarray) -> bytes:
    # Byte planes first: exponents of neighbouring floats are alike, so zstd finds runs.
    flat = np.ascontiguousarray(arr).view(np.uint8).reshape(-1, arr.dtype.itemsize)
    return flat.T.tobytes()


def _unshuffle(raw: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(shape)


def _encode_blob(value: Any, compression: str | None) -> tuple[bytes, dict[str, Any]]:
    meta: dict[str, Any]
    if isinstance(value, np.ndarray):
        meta = {"kind": "ndarray", "dtype": value.dtype.str, "shape": list(value.shape)}
        raw = _shuffle(value) if compression else np.ascontiguousarray(value).tobytes()
    elif isinstance(value, pa.Table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, value.schema) as writer:
            writer.write_table(value)
        meta = {"kind": "arrow"}
        raw = sink.getvalue().to_pybytes()
    else:
        meta = {"kind": "bytes"}
        raw = bytes(value)
    if compression:
        meta["codec"] = compression
        meta["raw_size"] = len(raw)
        raw = pa.compress(raw, codec=compression, asbytes=True)
    meta["size"] = len(raw)
    return raw, meta


def _decode_blob(raw: memoryview, meta: dict[str, Any]) -> Any:
    data: bytes | memoryview = raw
    codec = meta.get("codec")
    if codec:
        data = pa.decompress(
            bytes(raw), decompressed_size=meta["raw_size"], codec=codec, asbytes=True
        )
    kind = meta["kind"]
    if kind == "ndarray":
        dtype = np.dtype(meta["dtype"])
        shape = tuple(meta["shape"])
        if codec:
            return _unshuffle(bytes(data), dtype, shape)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if kind == "arrow":
        return pa.ipc.open_stream(pa.py_buffer(bytes(data))).read_all()
    if kind == "bytes":
        return bytes(data)
    raise ContractError(f"unknown blob kind {kind!r}")


def decode_message(body: bytes | memoryview) -> Message:
    """Parse a body into its message type; raises :class:`ContractError` on anything else."""
    view = memoryview(body)
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise ContractError("not a tess-ffi message (bad magic)")
    (hlen,) = _HEADER.unpack(view[4:8])
    try:
        header = json.loads(bytes(view[8 : 8 + hlen]))
        schema, version = header["schema"], header["v"]
        fields_ = dict(header["fields"])
        blob_meta = header["blobs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ContractError(f"malformed message header: {exc}") from None
    cls = MESSAGE_TYPES.get((schema, version))
    if cls is None:
        raise ContractError(f"unknown message schema {schema!r} version {version!r}")
    offset = 8 + hlen
    for meta in blob_meta:
        size = int(meta["size"])
        if offset + size > len(view):
            raise ContractError(f"{schema}: truncated body")
        try:
            fields_[meta["field"]] = _decode_blob(view[offset : offset + size], meta)
        except (ValueError, KeyError, pa.ArrowException) as exc:
            raise ContractError(f"{schema}: bad blob {meta.get('field')!r}: {exc}") from None
        offset += size
    return cls._from_parts(fields_)


# --- columnar tables ------------------------------------------------------------------------

#: The photometer's extra aperture radii (px) by column suffix: ``flux_r1p5`` and
#: ``flux_err_r1p5`` of :data:`PHOTOMETRY_SCHEMA` are measured with a 1.5-px aperture,
#: ``flux_r3`` and ``flux_err_r3`` with a 3-px one. ``flux`` and ``flux_err`` are the main,
#: 2-px aperture's. All share one local background (``bkg``, the 4-7 px annulus).
APERTURE_RADII: dict[str, float] = {"r1p5": 1.5, "r3": 3.0}

#: Per-FFI photometry (one row per star, photometer -> aggregator). ``flux``/``flux_err``:
#: background-subtracted flux (e-/s) in the main 2-px aperture; ``flux_<suffix>`` /
#: ``flux_err_<suffix>``: the same in the aperture of radius ``APERTURE_RADII[suffix]``.
#: ``EDGE`` in ``quality`` means the star's largest (3-px) aperture is cut by the edge of the
#: science area: each flux then covers only the pixels of its aperture inside it.
PHOTOMETRY_SCHEMA = pa.schema(
    [
        ("star_id", pa.int64()),
        ("flux", pa.float32()),
        ("flux_err", pa.float32()),
        ("bkg", pa.float32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("quality", pa.int32()),
        *(
            (f"{name}_{suffix}", pa.float32())
            for suffix in APERTURE_RADII
            for name in ("flux", "flux_err")
        ),
    ]
)

#: Stored photometry (the aggregator's Parquet dataset, what the products read) once a job's
#: light curves are built: ``flux``/``flux_err`` in each star's chosen aperture
#: (``aperture_radius``, px), the cadence and its time, and ``flux_corrected`` (the flux
#: divided by the light-curve cleaning's common-mode model). While the job runs, per-cadence
#: files hold the per-FFI columns instead (every aperture, :data:`PHOTOMETRY_SCHEMA`) and
#: these two read as null.
STORED_PHOTOMETRY_SCHEMA = pa.schema(
    [
        ("star_id", pa.int64()),
        ("cadence", pa.int32()),
        ("btjd", pa.float64()),
        ("flux", pa.float32()),
        ("flux_err", pa.float32()),
        ("bkg", pa.float32()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("quality", pa.int32()),
        ("flux_corrected", pa.float32()),
        ("aperture_radius", pa.float32()),
    ]
)
STORED_PHOTOMETRY_COLUMNS: list[str] = STORED_PHOTOMETRY_SCHEMA.names

STAR_SCHEMA = pa.schema(
    [
        ("star_id", pa.int64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("tmag", pa.float32()),
        ("tic_id", pa.int64()),
    ]
)


def photometry_table(star_id: npt.ArrayLike, **columns: npt.ArrayLike) -> pa.Table:
    """Build a per-FFI photometry table (:data:`PHOTOMETRY_SCHEMA`); missing columns are
    filled (NaN, or 0 for quality), among them the extra apertures' ``flux_r1p5`` ... .

    Examples
    --------
    >>> t = photometry_table([7], flux=[100.0], flux_r3=[104.0])
    >>> t.column_names[7:]
    ['flux_r1p5', 'flux_err_r1p5', 'flux_r3', 'flux_err_r3']
    >>> t.column("flux_r3").to_pylist(), t.column("flux_r1p5").to_pylist()
    ([104.0], [nan])
    """
    ids = np.asarray(star_id, dtype=np.int64)
    arrays = []
    for fld in PHOTOMETRY_SCHEMA:
        if fld.name == "star_id":
            arrays.append(pa.array(ids))
            continue
        dtype = fld.type.to_pandas_dtype()
        default = 0 if fld.name == "quality" else np.nan
        col = columns.get(fld.name)
        values = np.full(ids.shape, default, dtype=dtype) if col is None else col
        arrays.append(pa.array(np.asarray(values, dtype=dtype)))
    return pa.Table.from_arrays(arrays, schema=PHOTOMETRY_SCHEMA)


def star_catalog_table(
    star_id: npt.ArrayLike,
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    tmag: npt.ArrayLike,
    tic_id: npt.ArrayLike | None = None,
) -> pa.Table:
    """Build the reference star list (``stars.parquet`` has exactly this schema)."""
    n = len(np.asarray(star_id))
    tic = pa.nulls(n, pa.int64()) if tic_id is None else pa.array(tic_id, pa.int64())
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(star_id, dtype=np.int64)),
            pa.array(np.asarray(ra, dtype=np.float64)),
            pa.array(np.asarray(dec, dtype=np.float64)),
            pa.array(np.asarray(x, dtype=np.float64)),
            pa.array(np.asarray(y, dtype=np.float64)),
            pa.array(np.asarray(tmag, dtype=np.float32)),
            tic,
        ],
        schema=STAR_SCHEMA,
    )


# --- the messages ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobRequest(Message):
    """A user asks for a sector/camera/CCD to be processed (CLI -> aggregator)."""

    SCHEMA: ClassVar[str] = "tess_ffi.job_request"
    TOPIC: ClassVar[Topic] = Topic.JOBS


@dataclass(frozen=True, kw_only=True)
class JobPlan(Message):
    """The store's answer (aggregator -> fetcher): what is stored already, and the star list
    if one exists, so that a resumed job measures the same stars and nothing twice."""

    SCHEMA: ClassVar[str] = "tess_ffi.job_plan"
    TOPIC: ClassVar[Topic] = Topic.PLANS

    stored_cadences: list[int]
    stars: pa.Table | None = None


@dataclass(frozen=True, kw_only=True)
class ReferenceImage(Message):
    """A median stack of good frames (fetcher -> photometer) from which stars are detected."""

    SCHEMA: ClassVar[str] = "tess_ffi.reference_image"
    TOPIC: ClassVar[Topic] = Topic.REFERENCE

    image: np.ndarray
    header: str
    n_frames: int


@dataclass(frozen=True, kw_only=True)
class StarCatalog(Message):
    """The job's reference star list (photometer -> aggregator, fetcher)."""

    SCHEMA: ClassVar[str] = "tess_ffi.star_catalog"
    TOPIC: ClassVar[Topic] = Topic.CATALOGS

    stars: pa.Table


@dataclass(frozen=True, kw_only=True)
class FFIImage(Message):
    """One calibrated FFI in memory (fetcher -> photometer), with the stars to measure."""

    SCHEMA: ClassVar[str] = "tess_ffi.ffi_image"
    TOPIC: ClassVar[Topic] = Topic.FFI

    cadence: int
    filename: str
    header: str
    image: np.ndarray
    uncertainty: np.ndarray | None
    stars: pa.Table

    def message_id(self) -> str:
        return f"{self.SCHEMA}:{self.job.job_id}:{self.cadence}"


@dataclass(frozen=True, kw_only=True)
class FFIPhotometry(Message):
    """Every star measured on one FFI (photometer -> aggregator), columnar."""

    SCHEMA: ClassVar[str] = "tess_ffi.ffi_photometry"
    TOPIC: ClassVar[Topic] = Topic.PHOTOMETRY

    cadence: int
    btjd: float
    dquality: int
    table: pa.Table

    def message_id(self) -> str:
        return f"{self.SCHEMA}:{self.job.job_id}:{self.cadence}"


@dataclass(frozen=True, kw_only=True)
class FetchManifest(Message):
    """What the fetcher will deliver (fetcher -> aggregator): the expected cadences, and once
    ``final``, the cadences that could not be fetched with their reasons."""

    SCHEMA: ClassVar[str] = "tess_ffi.fetch_manifest"
    TOPIC: ClassVar[Topic] = Topic.MANIFESTS

    expected_cadences: list[int]
    failed: dict[str, str] = field(default_factory=dict)
    final: bool = False
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StarLightCurve(Message):
    """One star's light curve (aggregator -> analyzer).

    Version 2 adds ``flux_corrected`` (the raw ``flux`` divided by the cleaning's common-mode
    model) and the cleaning's bits in ``quality``, and ``btjd`` is the star's own barycentric
    time (the FFI header's, which is for the CCD's centre, plus
    :class:`~tess_ffi.shared.timing.BarycentricCorrection`'s offset). A version 1 body (no
    corrected flux) still decodes, with ``flux_corrected`` None.
    """

    SCHEMA: ClassVar[str] = "tess_ffi.star_lightcurve"
    VERSION: ClassVar[int] = 2
    TOPIC: ClassVar[Topic] = Topic.LIGHTCURVES

    star_id: int
    n_stars: int
    ra: float
    dec: float
    tmag: float
    btjd: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    quality: np.ndarray
    flux_corrected: np.ndarray | None = None

    def message_id(self) -> str:
        return f"{self.SCHEMA}:{self.job.job_id}:{self.star_id}"


@dataclass(frozen=True, kw_only=True)
class StarVariability(Message):
    """Variability metrics, period and class of one star (analyzer -> enricher)."""

    SCHEMA: ClassVar[str] = "tess_ffi.star_variability"
    TOPIC: ClassVar[Topic] = Topic.VARIABILITY

    star_id: int
    n_stars: int
    ra: float
    dec: float
    tmag: float
    metrics: dict[str, Any]

    def message_id(self) -> str:
        return f"{self.SCHEMA}:{self.job.job_id}:{self.star_id}"


@dataclass(frozen=True, kw_only=True)
class Candidate(Message):
    """A ranked variable-star candidate with its catalog match (enricher -> listeners)."""

    SCHEMA: ClassVar[str] = "tess_ffi.candidate"
    TOPIC: ClassVar[Topic] = Topic.CANDIDATES

    star_id: int
    ra: float
    dec: float
    period: float
    var_class: str
    score: float
    catalog_id: int | None = None
    catalog_tmag: float | None = None


@dataclass(frozen=True, kw_only=True)
class JobEvent(Message):
    """Progress and outcome of a job (any service -> listeners such as the CLI)."""

    SCHEMA: ClassVar[str] = "tess_ffi.job_event"
    TOPIC: ClassVar[Topic] = Topic.EVENTS

    kind: str  # "progress", "completed" or "failed"
    service: str
    detail: dict[str, Any] = field(default_factory=dict)


MESSAGE_TYPES: dict[tuple[str, int], type[Message]] = {
    (cls.SCHEMA, cls.VERSION): cls
    for cls in (
        JobRequest,
        JobPlan,
        ReferenceImage,
        StarCatalog,
        FFIImage,
        FFIPhotometry,
        FetchManifest,
        StarLightCurve,
        StarVariability,
        Candidate,
        JobEvent,
    )
}
# Light curves sent by a version-1 aggregator still in the queue after an upgrade.
MESSAGE_TYPES[(StarLightCurve.SCHEMA, 1)] = StarLightCurve
