"""Photometry per full FFI with 10,000 stars: the product's path against photutils and against
the floor of merely decoding the FITS bytes.

* product: ``read_calibrated_ffi`` on the FITS bytes, the fetcher's ``FFIImage``, then the
  photometer's ``measure_ffi`` (header, WCS positions, the frame's pointing offset from
  bright stars, aperture weights at the tracked positions, forced photometry, Arrow table).
  Steady state: the WCS positions of the previous frame are reused (simulated frames share
  one WCS); the pointing jitter moves every star by a few hundredths of a pixel on every
  frame, so the aperture weights are rebuilt (from tabulated 0.01-px weights) on nearly
  every frame, as in a real run. "cold" also clears the position cache before every frame:
  the cost when the WCS itself changes every frame.
* floor: ``read_calibrated_ffi`` alone (image and uncertainty into numpy arrays).
* photutils (the original pipeline's method): ``aperture_photometry`` with ``CircularAperture``
  (r = 2 px, exact overlap, with the uncertainty image) plus ``ApertureStats`` on a
  ``CircularAnnulus`` (4-7 px, 3-sigma clipped median, 5 iterations), same image, same
  positions.

Floor and product run interleaved, frame by frame; ratios are medians of per-frame ratios.

Targets: product >= 20x faster than photutils; product <= 3x the decode floor.

Run: ``python benchmarks/photometry.py [--stars 10000] [--frames 6] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time

import numpy as np

try:
    from benchmarks import _common as C
except ImportError:  # run as a script from the benchmarks folder
    import _common as C  # type: ignore[no-redef]


def photutils_photometry(image: np.ndarray, unc: np.ndarray, x: np.ndarray,
                         y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The original pipeline's per-FFI photometry: flux and local background per star."""
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    xy = np.column_stack([x, y])
    aperture = CircularAperture(xy, r=2.0)
    annulus = CircularAnnulus(xy, r_in=4.0, r_out=7.0)
    table = aperture_photometry(image, aperture, error=unc, method="exact")
    stats = ApertureStats(image, annulus, sigma_clip=SigmaClip(sigma=3.0, maxiters=5))
    bkg = np.asarray(stats.median, dtype=np.float64)
    flux = np.asarray(table["aperture_sum"], dtype=np.float64) - bkg * aperture.area
    return flux, bkg


def main(argv: list[str] | None = None) -> C.Report:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stars", type=int, default=C.N_STARS)
    p.add_argument("--frames", type=int, default=6, help="distinct simulated FFIs")
    p.add_argument("--rounds", type=int, default=3, help="passes over the frames")
    p.add_argument("--photutils-runs", type=int, default=2)
    args = p.parse_args(argv)

    from tess_ffi.services.photometer import service as phot_service
    from tess_ffi.services.photometer.photometry import build_aperture_weights
    from tess_ffi.services.photometer.photometry import forced_aperture_photometry as fap
    from tess_ffi.shared.contracts import JobSpec
    from tess_ffi.shared.fits_io import read_calibrated_ffi
    from tess_ffi.shared.quality import SATURATION_E_S

    C.header(f"photometry: {args.stars} stars per full FFI")
    report = C.Report("photometry")
    sim = C.sector(args.stars, args.frames)
    t0 = time.perf_counter()
    frames = [sim.ffi_bytes(i) for i in range(args.frames)]
    print(f"  rendered {args.frames} FFIs of {len(frames[0]) / 1e6:.1f} MB in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    stars = C.catalog_stars(sim)
    job = JobSpec(sector=1, camera=1, ccd=1)

    def clear_caches() -> None:
        phot_service._weights_cache.clear()
        phot_service._positions_cache.clear()

    def product(i: int) -> tuple[float, int, object]:
        msg = C.ffi_message(sim, i, frames[i], stars, job)
        return phot_service.measure_ffi(msg)

    # Warm up (imports, first allocation of every buffer), then measure in two memory
    # regimes, floor and product interleaved frame by frame:
    # * "fresh pages": malloc_trim(0) before every timed call, so each call page-faults the
    #   memory it writes (a photometer decoding message after message does: its decode output
    #   is faulted in on every frame);
    # * "recycled pages": glibc told never to return memory (mallopt), so every call reuses
    #   pages the previous one freed: the floor's best case.
    clear_caches()
    with C.Timer() as first:
        _, _, table0 = product(0)
    n_measured = table0.num_rows  # type: ignore[attr-defined]
    libc = ctypes.CDLL("libc.so.6")

    def regime(trim: bool, cold: bool = False) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {k: [] for k in ("floor", "prod", "ratio", "floor_cpu",
                                                        "prod_cpu", "ratio_cpu")}
        for _ in range(args.rounds):
            for i in range(args.frames):
                gc.collect()
                if trim:
                    libc.malloc_trim(0)
                with C.Timer() as d:
                    read_calibrated_ffi(frames[i], name="floor")
                if cold:
                    clear_caches()
                gc.collect()
                if trim:
                    libc.malloc_trim(0)
                with C.Timer() as pr:
                    product(i)
                out["floor"].append(d.s)
                out["prod"].append(pr.s)
                out["ratio"].append(pr.s / d.s)
                out["floor_cpu"].append(d.cpu)
                out["prod_cpu"].append(pr.cpu)
                out["ratio_cpu"].append(pr.cpu / d.cpu)
        return out

    fresh = regime(trim=True)
    assert libc.mallopt(-3, 32 << 20) == 1  # M_MMAP_THRESHOLD (its maximum): arrays on the heap
    assert libc.mallopt(-1, 1 << 31) == 1  # M_TRIM_THRESHOLD: keep freed memory
    for i in range(args.frames):
        read_calibrated_ffi(frames[i])
        product(i)
    recycled = regime(trim=False)
    cold = regime(trim=False, cold=True)

    # Where the product's time goes (same frame, decoded once; steady state).
    ffi = read_calibrated_ffi(frames[1])
    msg = C.ffi_message(sim, 1, frames[1], stars, job)
    phot_service.measure_ffi(msg)
    w = phot_service._weights_cache[0].weights  # stars in raster order
    parts: dict[str, list[float]] = {"msg": [], "measure": [], "forced": [], "weights": [],
                                     "wcs": []}
    for _ in range(5):
        with C.Timer() as t:
            msg = C.ffi_message(sim, 1, frames[1], stars, job)
        parts["msg"].append(t.s)
        with C.Timer() as t:
            phot_service.measure_ffi(msg)
        parts["measure"].append(t.s)
        with C.Timer() as t:
            fap(ffi.image, w.x, w.y, uncertainty=ffi.uncertainty, weights=w,
                saturation_level=0.98 * SATURATION_E_S)
        parts["forced"].append(t.s)
        with C.Timer() as t:
            build_aperture_weights(w.x, w.y)
        parts["weights"].append(t.s)
        clear_caches()
        with C.Timer() as t:
            phot_service._star_positions(
                __import__("astropy.io.fits", fromlist=["Header"]).Header.fromstring(msg.header),
                msg.header, stars.column("ra").to_numpy(), stars.column("dec").to_numpy(), "x")
        parts["wcs"].append(t.s)
        phot_service.measure_ffi(msg)  # re-warm the caches

    # photutils on the same image and positions.
    pu_t = []
    for _ in range(args.photutils_runs):
        with C.Timer() as t:
            pu_flux, pu_bkg = photutils_photometry(ffi.image, ffi.uncertainty, w.x, w.y)
        pu_t.append(t.s)
    res = fap(ffi.image, w.x, w.y, uncertainty=ffi.uncertainty, weights=w)
    ok = np.isfinite(res.flux) & np.isfinite(pu_flux) & (np.abs(pu_flux) > 100)
    agree = float(np.median(np.abs(res.flux[ok] - pu_flux[ok]) / np.abs(pu_flux[ok])))
    # Away from the science-area edges (photutils also uses the collateral pixels there).
    inner = (w.x > 44 + 8) & (w.x < 2092 - 9) & (w.y > 8) & (w.y < 2048 - 9)
    bkg_agree = float(np.nanmax(np.abs(res.bkg - pu_bkg)[inner] / np.abs(pu_bkg)[inner]))

    ms = 1e3
    med = C.median
    report.add("stars measured per FFI", n_measured, "stars")
    report.add("floor: read_calibrated_ffi, CPU per FFI (recycled pages)",
               med(recycled["floor_cpu"]) * ms, "ms",
               note=f"wall {med(recycled['floor']) * ms:.1f} ms")
    report.add("product: decode + measure_ffi, CPU per FFI (recycled pages)",
               med(recycled["prod_cpu"]) * ms, "ms",
               note=f"wall {med(recycled['prod']) * ms:.1f} ms; first frame incl. weights "
               f"build {first.s * ms:.0f} ms")
    report.add("photutils photometry per FFI (best of runs, wall)", min(pu_t) * ms, "ms",
               note=f"same numbers: flux to {agree:.1e} (median rel.), bkg to {bkg_agree:.1e} "
               "(max rel., stars 8 px or more inside the science area)")
    speedup = min(pu_t) / med(recycled["prod"])
    report.add("photutils / product (product incl. FITS decode, wall)", speedup, "x", ">= 20",
               speedup >= 20)
    meas_only = min(pu_t) / med(parts["measure"])
    report.add("photutils / measure_ffi alone (both on a decoded image)", meas_only, "x",
               ">= 20", meas_only >= 20)
    for label, r in (("recycled pages", recycled), ("fresh pages", fresh)):
        ratio = med(r["ratio_cpu"])
        report.add(f"product / decode floor, {label} (CPU)", ratio, "x", "<= 3", ratio <= 3.0,
                   note=f"median of paired ratios, spread {min(r['ratio_cpu']):.2f}-"
                   f"{max(r['ratio_cpu']):.2f}; wall {med(r['ratio']):.2f}; floor "
                   f"{med(r['floor_cpu']) * ms:.0f} ms CPU")
    ratio = med(cold["ratio_cpu"])
    report.add("product / floor, WCS + weights rebuilt every frame (CPU)", ratio, "x",
               "(<= 3)", ratio <= 3.0, note="recycled pages; a WCS moving stars >= 0.01 px/frame")
    report.add("  part: FITS decode + FFIImage (fetcher side)", C.median(parts["msg"]) * ms, "ms")
    report.add("  part: measure_ffi, steady state", C.median(parts["measure"]) * ms, "ms")
    report.add("  part:   forced_aperture_photometry", C.median(parts["forced"]) * ms, "ms")
    report.add("  part: WCS + positions (cold only)", C.median(parts["wcs"]) * ms, "ms")
    report.add("  part: build_aperture_weights (cold only)", C.median(parts["weights"]) * ms, "ms")
    report.note("product/floor = 1 + measure/decode: the floor is memory-bound (two 17.8 MB "
                "big-endian arrays copied and byte-swapped), the product adds ~1.1 M annulus "
                "and 0.5 M aperture pixel gathers, a row sort and a 5-iteration vectorised "
                "sigma clip; numbers move by +-30 % with the load of the other jobs")
    report.finish()
    return report


if __name__ == "__main__":
    main()
