"""The same stars across sectors: matched by sky position, stitched, normalised per sector.

Star ids are per sector/camera/CCD, so a star observed in several sectors is found by its
position: :func:`match_across_sectors` groups the star lists of the given sectors (every
camera and CCD of each) by nearest neighbour within ``radius_arcsec`` (one TESS pixel, 21",
by default), each sector contributing at most one star to a group. :func:`combine_sectors`
then reads those stars' photometry, puts each point at the star's own barycentric time
(:func:`~tess_ffi.products.tables.with_star_times`), divides each sector's flux (the
corrected flux where the job cleaned it, :func:`~tess_ffi.products.tables.best_flux`) by its
median usable value (sectors differ in aperture, background and pointing) and writes the
stitched light curves as Parquet under ``DIR/combined/``.

Examples
--------
>>> import pandas as pd
>>> s1 = pd.DataFrame({"target": "s0001-1-1", "sector": 1, "star_id": [1, 2],
...                    "ra": [10.0, 10.1], "dec": [-5.0, -5.0]})
>>> s2 = pd.DataFrame({"target": "s0002-3-4", "sector": 2, "star_id": [7, 8, 9],
...                    "ra": [10.1, 10.000001, 40.0], "dec": [-5.0, -5.0, 0.0]})
>>> m = match_across_sectors([s1, s2])
>>> m[["group", "sector", "star_id"]].values.tolist()
[[1, 1, 1], [1, 2, 8], [2, 1, 2], [2, 2, 7], [3, 2, 9]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tess_ffi.shared.quality import DEFAULT_BAD_BITS, good_mask
from tess_ffi.shared.storage import atomic_write_table

from .tables import (
    ProductError,
    Target,
    best_flux,
    default_data_dir,
    find_star_by_tic,
    list_targets,
    load_photometry,
    load_stars,
    resolve_target,
    star_row,
    target_dir,
    with_star_times,
)

__all__ = ["MATCH_RADIUS_ARCSEC", "CombineResult", "match_across_sectors", "combine_sectors"]

#: One TESS pixel.
MATCH_RADIUS_ARCSEC = 21.0

Progress = Callable[[int, int, str], None]


@dataclass
class CombineResult:
    """What :func:`combine_sectors` wrote: the stitched light curves and the matches."""

    path: Path
    matches_path: Path
    lightcurves: pd.DataFrame
    matches: pd.DataFrame


def _sep_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Great-circle separation (haversine), arcsec."""
    r1, d1, r2, d2 = (np.radians(np.asarray(a, float)) for a in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


def match_across_sectors(
    star_lists: Sequence[pd.DataFrame], *, radius_arcsec: float = MATCH_RADIUS_ARCSEC
) -> pd.DataFrame:
    """Group stars of several sectors by position.

    Parameters
    ----------
    star_lists : sequence of DataFrame
        One per sector, in order, each with ``target``, ``sector``, ``star_id``, ``ra``,
        ``dec`` (all the cameras and CCDs of that sector together).
    radius_arcsec : float
        Largest separation of a match.

    Returns
    -------
    DataFrame
        The input rows with ``group`` (1, 2, ... in order of first appearance) and
        ``sep_arcsec`` (from the group's first star), sorted by group and sector. A star
        without a counterpart forms a group of its own; when two stars of a sector match the
        same group the nearer one joins it and the other starts a new group.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if radius_arcsec <= 0:
        raise ProductError(f"the match radius must be positive, got {radius_arcsec}")
    ref_ra = np.zeros(0)
    ref_dec = np.zeros(0)
    out: list[pd.DataFrame] = []
    for stars in star_lists:
        s = stars.reset_index(drop=True).copy()
        group = np.full(len(s), -1, dtype=np.int64)
        sep = np.zeros(len(s))
        if len(s) and ref_ra.size:
            c1 = SkyCoord(s["ra"].to_numpy() * u.deg, s["dec"].to_numpy() * u.deg)
            c2 = SkyCoord(ref_ra * u.deg, ref_dec * u.deg)
            idx, d2d, _ = c1.match_to_catalog_sky(c2)
            arcsec = d2d.to_value(u.arcsec)
            ok = arcsec <= radius_arcsec
            # The nearest star of this sector claims a group; the others start new ones.
            cand = pd.DataFrame({"row": np.flatnonzero(ok), "grp": idx[ok], "sep": arcsec[ok]})
            cand = cand.sort_values(["grp", "sep"]).drop_duplicates("grp", keep="first")
            group[cand["row"].to_numpy()] = cand["grp"].to_numpy()
            sep[cand["row"].to_numpy()] = cand["sep"].to_numpy()
        new = group < 0
        group[new] = ref_ra.size + np.arange(int(new.sum()))
        ref_ra = np.r_[ref_ra, s["ra"].to_numpy(float)[new]]
        ref_dec = np.r_[ref_dec, s["dec"].to_numpy(float)[new]]
        s["group"] = group + 1
        s["sep_arcsec"] = sep
        out.append(s)
    if not out:
        return pd.DataFrame(columns=["target", "sector", "star_id", "ra", "dec", "group",
                                     "sep_arcsec"])
    frame = pd.concat(out, ignore_index=True)
    return frame.sort_values(["group", "sector"], kind="stable").reset_index(drop=True)


def _sector_stars(sector: int, root: Path) -> tuple[list[Target], pd.DataFrame]:
    targets = [t for t in list_targets(root, sectors=[sector])
               if (t.path(root) / "stars.parquet").exists()]
    if not targets:
        have = sorted({t.sector for t in list_targets(root)})
        raise ProductError(f"no star list for sector {sector} under {root} "
                           f"(sectors with outputs: {', '.join(map(str, have)) or 'none'})")
    frames = []
    for t in targets:
        stars = pd.read_parquet(t.path(root) / "stars.parquet")
        cols = [c for c in ("star_id", "ra", "dec", "tmag", "tic_id") if c in stars.columns]
        stars = stars[cols].copy()
        stars.insert(0, "target", t.label)
        stars.insert(1, "sector", t.sector)
        stars.insert(2, "camera", t.camera)
        stars.insert(3, "ccd", t.ccd)
        frames.append(stars)
    return targets, pd.concat(frames, ignore_index=True)


def _parse_sectors(sectors: Sequence[int] | str) -> list[int]:
    if isinstance(sectors, str):
        try:
            values = [int(s) for s in sectors.replace(" ", "").split(",") if s]
        except ValueError:
            raise ProductError(f"--sectors must be numbers separated by commas, got {sectors!r}"
                               ) from None
    else:
        values = [int(s) for s in sectors]
    if len(values) < 2 or len(set(values)) != len(values):
        raise ProductError(f"give at least two different sectors, got {values}")
    return values


def combine_sectors(
    sectors: Sequence[int] | str,
    *,
    star_id: int | None = None,
    tic_id: int | None = None,
    camera: int | None = None,
    ccd: int | None = None,
    data_dir: Path | str | None = None,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
    min_sectors: int = 2,
    bad_bits: int = DEFAULT_BAD_BITS,
    out: Path | str | None = None,
    progress: Progress | None = None,
) -> CombineResult:
    """Stitch the light curves of the same star(s) across ``sectors``.

    Parameters
    ----------
    sectors : sequence of int or "A,B,..."
        At least two sectors; the first is the reference.
    star_id, tic_id : int, optional
        One star of the first sector (``camera``/``ccd`` pick its CCD when the sector has
        several); without either, every star found in at least ``min_sectors`` sectors.
    data_dir : path, optional
        The output root (default ``TESS_FFI_DATA_DIR`` or ``./data``).
    radius_arcsec : float
        Largest separation of a match (default one pixel, 21").
    min_sectors : int
        All-stars mode: keep groups seen in at least this many sectors.
    bad_bits : int
        Quality bits that keep a point out of the per-sector median (``good`` column).
    out : path, optional
        Output Parquet file (default
        ``DIR/combined/<TIC_n, STAR_id_sSSSS-C-D or all>_sectors_A-B.parquet``);
        the matches go beside it with a ``_matches`` suffix.
    progress : callable, optional
        ``progress(done, total, what)`` after each target read.

    Returns
    -------
    CombineResult
        ``lightcurves`` has one row per point: ``group``, ``name``, ``sector``, ``camera``,
        ``ccd``, ``star_id``, ``cadence``, ``btjd`` (the star's own barycentric time),
        ``btjd_ccd`` (the FFI header's, for the CCD centre), ``flux``, ``flux_err`` (raw, e-/s),
        ``flux_corrected`` (e-/s, NaN where not cleaned), ``flux_norm``, ``flux_err_norm``
        (the corrected flux where there is one, else the raw flux, and its error, over the
        sector's median usable value), ``quality``, ``good``, sorted by group and time;
        ``matches`` one row per star and sector with ``sep_arcsec``.
    """
    root = default_data_dir(data_dir)
    order = _parse_sectors(sectors)
    lists: list[pd.DataFrame] = []
    for sector in order:
        lists.append(_sector_stars(sector, root)[1])
    label = "all"
    if star_id is not None or tic_id is not None:
        ref = resolve_target(order[0], camera, ccd, data_dir=root)
        if star_id is None:
            assert tic_id is not None
            star_id = find_star_by_tic(tic_id, target=ref, data_dir=root)
        first = lists[0]
        row = star_row(first[first["target"] == ref.label], int(star_id), ref.label)
        lists[0] = first[(first["target"] == ref.label) & (first["star_id"] == int(star_id))]
        # Other sectors: only stars near the reference (cheap, and no false groups).
        near = [s[_sep_arcsec(s["ra"], s["dec"], row["ra"], row["dec"]) <= radius_arcsec]
                for s in lists[1:]]
        lists = [lists[0], *near]
        tic = row.get("tic_id")
        label = (f"TIC_{int(tic)}" if tic is not None and pd.notna(tic)
                 else f"STAR_{int(star_id):06d}_{ref.label}")
    matches = match_across_sectors(lists, radius_arcsec=radius_arcsec)
    if star_id is not None:
        matches = matches[matches["group"] == 1]
    else:
        n_sectors = matches.groupby("group")["sector"].transform("nunique")
        matches = matches[n_sectors >= min_sectors]
        if matches.empty:
            raise ProductError(f"no star is found in {min_sectors} of sectors "
                               f"{', '.join(map(str, order))} within {radius_arcsec} arcsec")
    # Renumber groups 1..n.
    matches = matches.copy()
    matches["group"] = pd.factorize(matches["group"], sort=True)[0] + 1
    ref_rows = matches.drop_duplicates("group", keep="first").set_index("group")
    tic = (pd.to_numeric(ref_rows["tic_id"], errors="coerce") if "tic_id" in ref_rows
           else pd.Series(np.nan, index=ref_rows.index))
    star_names = "STAR " + ref_rows["star_id"].astype(str) + " " + ref_rows["target"]
    names = ("TIC " + tic.fillna(0).astype(np.int64).astype(str)).where(tic.notna(), star_names)
    matches["name"] = matches["group"].map(names)
    pieces: list[pd.DataFrame] = []
    by_target = list(matches.groupby("target", sort=True))
    for i, (tlabel, members) in enumerate(by_target):
        target = Target.parse(str(tlabel))
        target_dir(target, root)
        phot = load_photometry(target=target, data_dir=root,
                               star_ids=members["star_id"].to_numpy(),
                               columns=["star_id", "cadence", "btjd", "flux", "flux_err",
                                        "quality", "flux_corrected"])
        assert isinstance(phot, pd.DataFrame)
        phot = with_star_times(phot, load_stars(target=target, data_dir=root))
        phot = phot.merge(members[["star_id", "group", "name", "sector", "camera", "ccd"]],
                          on="star_id", how="inner")
        pieces.append(phot)
        if progress is not None:
            progress(i + 1, len(by_target), str(tlabel))
    lc = pd.concat(pieces, ignore_index=True)
    for col in ("flux", "flux_err", "flux_corrected"):
        lc[col] = lc[col].astype(np.float64)
    flux, flux_err = best_flux(lc)
    lc["good"] = good_mask(lc["quality"].to_numpy(), bad_bits) & np.isfinite(flux)
    good_flux = pd.Series(np.where(lc["good"], flux, np.nan), index=lc.index)
    med = good_flux.groupby([lc["group"], lc["sector"]]).transform("median").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        lc["flux_norm"] = flux / med
        lc["flux_err_norm"] = flux_err / med
    cols = ["group", "name", "sector", "camera", "ccd", "star_id", "cadence", "btjd", "btjd_ccd",
            "flux", "flux_err", "flux_corrected", "flux_norm", "flux_err_norm", "quality", "good"]
    lc = lc[cols].sort_values(["group", "btjd"], kind="stable").reset_index(drop=True)
    span = "-".join(map(str, order))
    path = Path(out) if out is not None else root / "combined" / f"{label}_sectors_{span}.parquet"
    matches_path = path.with_name(path.stem + "_matches.parquet")
    match_cols = [c for c in ("group", "name", "sector", "camera", "ccd", "target", "star_id",
                              "ra", "dec", "tmag", "tic_id", "sep_arcsec") if c in matches]
    matches = matches[match_cols].reset_index(drop=True)
    atomic_write_table(pa.Table.from_pandas(lc, preserve_index=False), path)
    atomic_write_table(pa.Table.from_pandas(matches, preserve_index=False), matches_path)
    return CombineResult(path=path, matches_path=matches_path, lightcurves=lc, matches=matches)
