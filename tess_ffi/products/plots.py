"""PNG plots of light curves, periodograms, phase-folded curves and a target's overview.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state,
no display needed) and written atomically. Each function returns the path it wrote; the image
size in pixels is ``FIGURE_SIZES[kind] * DPI``.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> t = np.linspace(0, 10, 200)
>>> path = plot_lightcurve(t, 100 + np.sin(t), pathlib.Path(tempfile.mkdtemp()) / "lc.png")
>>> png_size(path)
(1000, 400)
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tess_ffi.shared.storage import atomic_write

from .tables import flux_to_mag

__all__ = [
    "DPI",
    "FIGURE_SIZES",
    "png_size",
    "plot_lightcurve",
    "plot_periodogram",
    "plot_phase",
    "plot_overview",
    "binned_phase_curve",
]

DPI = 100
#: Figure sizes in inches (width, height); times :data:`DPI` gives pixels.
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "lightcurve": (10.0, 4.0),
    "periodogram": (10.0, 4.0),
    "phase": (8.0, 5.0),
    "overview": (12.0, 9.0),
}
_CLASS_COLORS = {
    "EA": "tab:red", "EW": "tab:orange", "ROT": "tab:green", "DSCT": "tab:purple",
    "TRANSIT": "tab:brown", "FLARE": "tab:pink", "UNKNOWN": "tab:olive", "CONST": "0.6",
}


def _figure(kind: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZES[kind], dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    data = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def png_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk; ValueError when not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _arrays(*values: npt.ArrayLike | None) -> list[npt.NDArray[np.float64] | None]:
    return [None if v is None else np.asarray(v, dtype=np.float64) for v in values]


def plot_lightcurve(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    path: Path | str,
    *,
    flux_err: npt.ArrayLike | None = None,
    good: npt.ArrayLike | None = None,
    tmag: float | None = None,
    title: str = "",
    flux_label: str = "flux",
) -> Path:
    """The light curve against BTJD; flagged points (``good`` False) in grey.

    With ``tmag`` the y axis is the TESS magnitude (``tmag`` at the median good flux,
    brighter up), as a VSX submission shows it; otherwise ``flux_label`` in e-/s (say
    which flux it is, e.g. :func:`~tess_ffi.products.tables.flux_label`'s "corrected flux").
    """
    t, f, e = _arrays(time, flux, flux_err)
    assert t is not None and f is not None
    ok = np.ones(t.size, bool) if good is None else np.asarray(good, bool)
    fig = _figure("lightcurve")
    ax = fig.add_subplot(1, 1, 1)
    if tmag is not None and np.isfinite(tmag):
        ref = float(np.nanmedian(f[ok])) if ok.any() else float(np.nanmedian(f))
        y = float(tmag) + flux_to_mag(f, ref)
        dy = None if e is None else 1.0857 * e / np.where(f > 0, f, np.nan)
        ax.invert_yaxis()
        ax.set_ylabel("TESS magnitude (T)")
    else:
        y, dy = f, e
        ax.set_ylabel(f"{flux_label} (e-/s)")
    if (~ok).any():
        ax.plot(t[~ok], y[~ok], ".", color="0.75", ms=3, label="flagged")
    if dy is not None:
        ax.errorbar(t[ok], y[ok], yerr=dy[ok], fmt=".", ms=3, color="k", ecolor="0.6",
                    elinewidth=0.5, label="good")
    else:
        ax.plot(t[ok], y[ok], ".", ms=3, color="k", label="good")
    ax.set_xlabel("time (BTJD = BJD - 2457000)")
    if (~ok).any():
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_periodogram(
    period: npt.ArrayLike,
    power: npt.ArrayLike,
    path: Path | str,
    *,
    best_period: float | None = None,
    label: str = "Lomb-Scargle",
    extra: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]] | None = None,
    title: str = "",
) -> Path:
    """Power against period (log axis), the adopted period marked.

    ``extra`` adds panels: ``{"BLS": (periods, power)}``.
    """
    panels = [(label, period, power)] + [(k, p, w) for k, (p, w) in (extra or {}).items()]
    fig = _figure("periodogram")
    for i, (name, p, w) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        p_arr, w_arr = np.asarray(p, float), np.asarray(w, float)
        order = np.argsort(p_arr)
        ax.plot(p_arr[order], w_arr[order], "-", color="k", lw=0.7)
        ax.set_xscale("log")
        ax.set_ylabel(f"{name} power")
        if best_period is not None and math.isfinite(best_period):
            ax.axvline(best_period, color="tab:red", lw=1, alpha=0.7,
                       label=f"P = {best_period:.6f} d")
            ax.legend(loc="upper right", fontsize="small")
        if i == 0:
            ax.set_title(title)
    ax.set_xlabel("period (d)")
    fig.tight_layout()
    return _save(fig, path)


def binned_phase_curve(
    phase: npt.ArrayLike, values: npt.ArrayLike, bins: int = 50
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Bin centres in [0, 1) and the median of ``values`` per bin (NaN for empty bins).

    >>> c, m = binned_phase_curve([0.05, 0.06, 0.55], [1.0, 3.0, 5.0], bins=2)
    >>> c.tolist(), m.tolist()
    ([0.25, 0.75], [2.0, 5.0])
    """
    ph = np.mod(np.asarray(phase, float), 1.0)
    v = np.asarray(values, float)
    idx = np.minimum((ph * bins).astype(np.int64), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    frame = pd.DataFrame({"bin": idx, "v": v}).dropna()
    med = frame.groupby("bin")["v"].median()
    out = np.full(bins, np.nan)
    out[med.index.to_numpy()] = med.to_numpy()
    return centres, out


def plot_phase(
    time: npt.ArrayLike,
    flux: npt.ArrayLike,
    period: float,
    epoch: float,
    path: Path | str,
    *,
    good: npt.ArrayLike | None = None,
    tmag: float | None = None,
    title: str = "",
    bins: int = 50,
    flux_label: str = "flux",
) -> Path:
    """The light curve folded on ``period`` with phase 0 at ``epoch`` (BTJD), two cycles.

    Points and the binned median curve; the period and the epoch (as BJD) are written on the
    plot, as VSX asks of a phase plot. With ``tmag`` the y axis is in TESS magnitudes,
    otherwise ``flux_label`` over its median.
    """
    if not (period > 0 and math.isfinite(period)):
        raise ValueError(f"a phase plot needs a positive period, got {period}")
    if not math.isfinite(epoch):
        raise ValueError("a phase plot needs a finite epoch")
    t, f = _arrays(time, flux)[:2]
    assert t is not None and f is not None
    ok = np.ones(t.size, bool) if good is None else np.asarray(good, bool)
    t, f = t[ok], f[ok]
    ref = float(np.nanmedian(f))
    if tmag is not None and np.isfinite(tmag):
        y = float(tmag) + flux_to_mag(f, ref)
        ylabel = "TESS magnitude (T)"
    else:
        y = f / ref
        ylabel = f"normalised {flux_label}"
    phase = np.mod((t - epoch) / period, 1.0)
    centres, med = binned_phase_curve(phase, y, bins)
    fig = _figure("phase")
    ax = fig.add_subplot(1, 1, 1)
    for shift in (0.0, 1.0):
        ax.plot(phase + shift, y, ".", ms=2.5, color="0.45", alpha=0.6)
        ax.plot(centres + shift, med, "-", color="tab:red", lw=1.5)
    if tmag is not None and np.isfinite(tmag):
        ax.invert_yaxis()
    ax.set_xlim(0.0, 2.0)
    ax.set_xlabel("phase")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.text(0.01, 0.02, f"P = {period:.6f} d   epoch = BJD {epoch + 2457000.0:.5f}",
            transform=ax.transAxes, fontsize="medium", va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    fig.tight_layout()
    return _save(fig, path)


def plot_overview(
    stats: pd.DataFrame,
    variability: pd.DataFrame | None,
    path: Path | str,
    *,
    title: str = "",
) -> Path:
    """Four panels for one target: precision against magnitude (by class), completeness,
    period against amplitude of the periodic stars, and the class counts.

    ``stats`` comes from :func:`tess_ffi.products.tables.lightcurve_stats` (merged with the
    star list's ``tmag``); ``variability`` is ``variability.parquet`` (or None).
    """
    fig = _figure("overview")
    axes = fig.subplots(2, 2)
    frame = stats.copy()
    if variability is not None and "var_class" in variability.columns:
        keep = [c for c in ("star_id", "var_class", "period", "amplitude", "tmag")
                if c in variability.columns and (c == "star_id" or c not in frame.columns)]
        frame = frame.merge(variability[keep], on="star_id", how="left")
    if "var_class" not in frame.columns:
        frame["var_class"] = "CONST"
    frame["var_class"] = frame["var_class"].fillna("UNKNOWN")
    ax = axes[0, 0]
    if "tmag" in frame.columns:
        for cls, sub in frame.groupby("var_class"):
            ax.plot(sub["tmag"], sub["rms_ppm"], ".", ms=4, label=f"{cls} ({len(sub)})",
                    color=_CLASS_COLORS.get(str(cls), "k"))
        ax.set_yscale("log")
        ax.set_xlabel("Tmag")
        ax.set_ylabel("robust scatter (ppm)")
        ax.legend(fontsize="x-small", ncol=2)
    ax = axes[0, 1]
    comp = frame["completeness"].to_numpy(dtype=float)
    ax.hist(comp[np.isfinite(comp)], bins=20, range=(0, 1), color="0.4")
    ax.set_xlabel("completeness (good points / expected cadences)")
    ax.set_ylabel("stars")
    ax = axes[1, 0]
    if {"period", "amplitude"} <= set(frame.columns):
        per = frame[np.isfinite(frame["period"].to_numpy(dtype=float))]
        for cls, sub in per.groupby("var_class"):
            ax.plot(sub["period"], sub["amplitude"], "o", ms=4, label=str(cls),
                    color=_CLASS_COLORS.get(str(cls), "k"))
        if len(per):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize="x-small")
    ax.set_xlabel("period (d)")
    ax.set_ylabel("amplitude (max-min)/median")
    ax = axes[1, 1]
    counts = frame["var_class"].value_counts().sort_index()
    ax.bar(counts.index.astype(str), counts.to_numpy(),
           color=[_CLASS_COLORS.get(str(c), "k") for c in counts.index])
    ax.set_yscale("log")
    ax.set_ylabel("stars")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
