"""tess-ffi: TESS Full-Frame Images into light curves and variable-star candidates.

The Python API mirrors the command line. Names are imported on first use, so
``import tess_ffi`` stays cheap and the command line starts fast.

* running a job: :func:`run_job` (``asyncio.run(run_job(JobSpec(...), load_settings()))``);
* reading outputs: :func:`list_targets`, :func:`load_stars`, :func:`load_photometry`,
  :func:`load_lightcurve` (pandas or ``astropy.table.Table``), :func:`load_variability`,
  :func:`load_candidates`, :func:`lightcurve_stats`, :func:`data_inventory`;
* variables: :func:`find_variables` (a sector's ranked candidates), :func:`analyze_file` /
  :func:`analyze_files` (SPOC, TESS-SPOC, TGLC, QLP, TESScut files), :func:`read_lightcurve`,
  :func:`analyze_lightcurve`;
* products: :func:`build_report` (VSX plots and summary), :func:`export_dataset` (ML features
  and time series), :func:`combine_sectors` (a star across sectors),
  :func:`export_lightcurve_fits` (a lightkurve-readable FITS light curve).

Examples
--------
>>> import tess_ffi
>>> tess_ffi.load_lightcurve.__module__
'tess_ffi.products.tables'
>>> "run_job" in dir(tess_ffi)
True
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    "run_job": "tess_ffi.pipeline",
    "JobSpec": "tess_ffi.shared.contracts",
    "load_settings": "tess_ffi.shared.config",
    "Target": "tess_ffi.products.tables",
    "ProductError": "tess_ffi.products.tables",
    "list_targets": "tess_ffi.products.tables",
    "load_stars": "tess_ffi.products.tables",
    "load_photometry": "tess_ffi.products.tables",
    "load_lightcurve": "tess_ffi.products.tables",
    "load_variability": "tess_ffi.products.tables",
    "load_candidates": "tess_ffi.products.tables",
    "lightcurve_stats": "tess_ffi.products.tables",
    "data_inventory": "tess_ffi.products.inventory",
    "find_variables": "tess_ffi.products.variables",
    "analyze_file": "tess_ffi.products.variables",
    "analyze_files": "tess_ffi.products.variables",
    "build_report": "tess_ffi.products.report",
    "export_dataset": "tess_ffi.products.export",
    "combine_sectors": "tess_ffi.products.combine",
    "export_lightcurve_fits": "tess_ffi.products.lcfits",
    "write_lightcurve_fits": "tess_ffi.products.lcfits",
    "read_lightcurve": "tess_ffi.services.analyzer.lightcurve_files",
    "analyze_lightcurve": "tess_ffi.services.analyzer.variability",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tess_ffi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
