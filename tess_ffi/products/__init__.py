"""Read-side tools on the pipeline's Parquet outputs: tables, statistics, plots, candidates,
reports for VSX, machine-learning exports, multi-sector light curves and FITS light curves.

Nothing here talks to the services; the analyzer's science
(:mod:`tess_ffi.services.analyzer.variability`, :mod:`~tess_ffi.services.analyzer.
lightcurve_files`) is reused for light-curve files and reports.

Examples
--------
>>> from tess_ffi.products import Target
>>> Target(1, 2, 3).label
's0001-2-3'
"""

from __future__ import annotations

from .combine import CombineResult, combine_sectors, match_across_sectors
from .export import ExportResult, export_dataset
from .inventory import BrokerStatus, data_inventory, derived_products, watch_broker
from .lcfits import export_lightcurve_fits, lightcurve_hdulist, write_lightcurve_fits
from .report import Report, build_report
from .tables import (
    ProductError,
    Target,
    lightcurve_stats,
    list_targets,
    load_candidates,
    load_lightcurve,
    load_photometry,
    load_stars,
    load_variability,
    resolve_target,
)
from .variables import analyze_file, analyze_files, find_variables

__all__ = [
    "BrokerStatus",
    "CombineResult",
    "ExportResult",
    "ProductError",
    "Report",
    "Target",
    "analyze_file",
    "analyze_files",
    "build_report",
    "combine_sectors",
    "export_dataset",
    "export_lightcurve_fits",
    "find_variables",
    "data_inventory",
    "derived_products",
    "lightcurve_hdulist",
    "lightcurve_stats",
    "list_targets",
    "load_candidates",
    "load_lightcurve",
    "load_photometry",
    "load_stars",
    "load_variability",
    "match_across_sectors",
    "resolve_target",
    "watch_broker",
    "write_lightcurve_fits",
]
