"""Configuration: command-line options over environment variables over defaults.

Every setting has an environment variable (``TESS_FFI_*``) so containers are configured
without arguments; secrets may come from a file (``TESS_FFI_BROKER_FILE``), as Docker and
Kubernetes secrets are mounted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings", "load_settings", "output_dir", "validate_target"]


@dataclass(frozen=True)
class Settings:
    broker_url: str | None = None
    data_dir: Path = Path("data")
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    namespace: str = "tess-ffi"
    max_message_bytes: int = 64 * 2**20
    prefetch: int = 2
    log_level: str = "INFO"
    #: A job with no progress for this long is planned again (lost transient images are
    #: fetched again; a restarted fetcher picks the job up).
    stall_timeout_s: float = 120.0
    #: Never query MAST/VizieR; match candidates against ``catalog_files`` only.
    offline: bool = False
    #: Local catalogs (Parquet/CSV with id, ra, dec, Tmag) for offline enrichment.
    catalog_files: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip() or None
    return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit (non-None) overrides on top."""
    base = Settings(
        broker_url=_env("TESS_FFI_BROKER"),
        data_dir=Path(_env("TESS_FFI_DATA_DIR") or "data"),
        http_host=_env("TESS_FFI_HTTP_HOST") or "127.0.0.1",
        http_port=int(p) if (p := _env("TESS_FFI_HTTP_PORT")) else None,
        namespace=_env("TESS_FFI_NAMESPACE") or "tess-ffi",
        max_message_bytes=int(_env("TESS_FFI_MAX_MESSAGE_BYTES") or 64 * 2**20),
        prefetch=int(_env("TESS_FFI_PREFETCH") or 2),
        log_level=_env("TESS_FFI_LOG_LEVEL") or "INFO",
        stall_timeout_s=float(_env("TESS_FFI_STALL_TIMEOUT_S") or 120.0),
        offline=(_env("TESS_FFI_OFFLINE") or "").lower() in ("1", "true", "yes"),
        catalog_files=tuple(
            Path(p) for p in (_env("TESS_FFI_CATALOG_FILES") or "").split(",") if p.strip()
        ),
    )
    if "data_dir" in overrides and overrides["data_dir"] is not None:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return base.with_overrides(**overrides)


def validate_target(sector: int, camera: int, ccd: int) -> None:
    """Raise ValueError with one clear line for an impossible sector/camera/CCD.

    >>> validate_target(70, 1, 1)
    >>> validate_target(70, 5, 1)
    Traceback (most recent call last):
    ...
    ValueError: camera must be 1-4, got 5
    """
    if not 1 <= int(sector) <= 999:
        raise ValueError(f"sector must be a positive TESS sector number (1-999), got {sector}")
    if not 1 <= int(camera) <= 4:
        raise ValueError(f"camera must be 1-4, got {camera}")
    if not 1 <= int(ccd) <= 4:
        raise ValueError(f"ccd must be 1-4, got {ccd}")


def output_dir(data_dir: Path | str, sector: int, camera: int, ccd: int) -> Path:
    """Where a job's Parquet outputs live: ``DIR/tess/sector_SSS/camC_ccdD``.

    >>> output_dir("data", 7, 2, 3).as_posix()
    'data/tess/sector_007/cam2_ccd3'
    """
    return Path(data_dir) / "tess" / f"sector_{int(sector):03d}" / f"cam{int(camera)}_ccd{int(ccd)}"
