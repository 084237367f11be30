"""Catalog enrichment (TIC via astroquery's MAST client, VSX via its VizieR client).

A local aiohttp server answers both protocols the way the real services do:

* MAST portal: ``POST /portal/Mashup/Mashup.asmx/columnsconfig`` (``colConfigId=...``) gives
  the real TIC column configuration (``ticcolumns.json``); ``POST /api/v0/invoke`` with a
  form field ``request`` = JSON ``{"service": "Mast.Catalogs.TIC.Cone", "params": {"ra",
  "dec", "radius" (deg)}, "format": "json", "pagesize", "page"}`` gives rows in the real
  mashup JSON shape (``fields``, ``data``, ``paging``, ``status``) taken from the real TIC
  cone answer ``tic.json``: its seven stars, plus copies shifted to other fields, filtered to
  the cone asked for.
* VizieR: ``POST /viz-bin/votable`` with astroquery's newline-separated ASU script
  (``-source=B/vsx/vsx``, ``-c=RA±DEC``, ``-c.rs=R``, ``-out=...``) gives a VOTable shaped
  like VizieR's (RESOURCE ``B/vsx``, TABLE ``B/vsx/vsx``, FIELDs with units and UCDs).

The server counts every request, so batching and caching are measured, not assumed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import pytest
from aiohttp import web

from tess_ffi.services.enricher.tic import (
    ENRICHMENT_COLUMNS,
    EnrichmentConfig,
    cluster_positions,
    enrich_candidates,
)

MOCKS = (Path(__file__).resolve().parents[2] / "shared" / "data" / "tess" / "format_refs"
         / "astroquery_mast_mocks")


def _sep_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s))))


# -- the sky the fake services know ------------------------------------------------------------

FIELD_SHIFTS = [(0.0, 0.0), (20.0, 0.0), (0.0, 15.0)]  # (dRA, dDec) deg of the copies of tic.json
BLEND_STAR_ID = 990000000001
FAINT_STAR_ID = 990000000002
VSX_STAR_ID = 10000732586  # a real TIC star of tic.json: the known variable sits on it
VSX_NAME = "ASASSN-V J165713.56-040846.8"


def _load_tic() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    tic = json.loads((MOCKS / "tic.json").read_text())
    colconfig = json.loads((MOCKS / "ticcolumns.json").read_text())
    return tic["data"], tic["fields"], colconfig


def build_tic_sky() -> list[dict[str, Any]]:
    """Real TIC rows (all columns), in three fields, plus a bright and a faint neighbour of
    the first star 30" and 35" away."""
    rows, _, _ = _load_tic()
    sky = []
    for k, (dra, ddec) in enumerate(FIELD_SHIFTS):
        for row in rows:
            new = copy.deepcopy(row)
            new["ID"] = row["ID"] + k * 100_000_000_000
            new["ra"] = round((row["ra"] + dra) % 360, 6)
            new["dec"] = round(row["dec"] + ddec, 6)
            sky.append(new)
    first = rows[0]
    bright = copy.deepcopy(first)
    bright.update(ID=BLEND_STAR_ID, dec=round(first["dec"] + 30 / 3600, 6), Tmag=10.5, Teff=5750.0)
    faint = copy.deepcopy(first)
    faint.update(ID=FAINT_STAR_ID, dec=round(first["dec"] - 35 / 3600, 6), Tmag=18.9)
    return [*sky, bright, faint]


def build_vsx_sky() -> list[dict[str, Any]]:
    """One real-looking VSX entry on TIC 10000732586, and one variable far from candidates."""
    rows, _, _ = _load_tic()
    on = next(r for r in rows if r["ID"] == VSX_STAR_ID)
    return [
        {"Name": VSX_NAME, "RAJ2000": round(on["ra"], 5), "DEJ2000": round(on["dec"], 5),
         "Type": "EW", "Period": 0.3634270},
        {"Name": "NSVS 11934420", "RAJ2000": 254.35000, "DEJ2000": -4.02000,
         "Type": "SR", "Period": None},
    ]


VOTABLE_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns="http://www.ivoa.net/xml/VOTable/v1.3"
  xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 http://www.ivoa.net/xml/VOTable/v1.3">
 <DESCRIPTION>
   VizieR Astronomical Server vizier.cds.unistra.fr
    Date: 2024-05-14T09:12:03 [V7.33.3]
   In case of problem, please report to: cds-question@unistra.fr
 </DESCRIPTION>
<!-- VOTable description at http://www.ivoa.net/Documents/latest/VOT.html -->
<INFO ID="VERSION" name="votable-version" value="1.99+ (14-Oct-2013)"/>
<INFO ID="Ref" name="-ref" value="VOTx4162"/>
<INFO name="-out.form" value="mini"/>
<INFO name="MaxTuples" value="{max}" />
<INFO name="queryParameters" value="{nparams}">
{params}
</INFO>
<INFO ID="Target" name="-c" value="{target}">
Constraint -c.rs={radius}</INFO>
<RESOURCE ID="yCat_2027" name="B/vsx">
  <DESCRIPTION>AAVSO International Variable Star Index VSX (Watson+, 2006-2014)</DESCRIPTION>
  <COOSYS ID="H_2000.000" system="ICRS" epoch="2000.000"/>
  <TABLE ID="B_vsx_vsx" name="B/vsx/vsx">
    <DESCRIPTION>Variable Star indeX (version 2024-05-13)</DESCRIPTION>
    <!-- The main part of Variable Star indeX -->
    <!-- Definitions of GROUPs and FIELDs -->
    <FIELD name="Name" ucd="meta.id;meta.main" datatype="char" arraysize="30*">
      <DESCRIPTION>Variable star identifier</DESCRIPTION>
    </FIELD>
    <FIELD name="RAJ2000" ucd="pos.eq.ra;meta.main" ref="H_2000.000" datatype="double"
      width="9" precision="5" unit="deg">
      <DESCRIPTION>Right ascension (J2000)</DESCRIPTION>
    </FIELD>
    <FIELD name="DEJ2000" ucd="pos.eq.dec;meta.main" ref="H_2000.000" datatype="double"
      width="9" precision="5" unit="deg">
      <DESCRIPTION>Declination (J2000)</DESCRIPTION>
    </FIELD>
    <FIELD name="Type" ucd="meta.code.class;src.var" datatype="char" arraysize="30*">
      <DESCRIPTION>Variability type, as in GCVS catalog</DESCRIPTION>
    </FIELD>
    <FIELD name="Period" ucd="time.period" datatype="double" width="16" precision="10"
      unit="d">
      <DESCRIPTION>? Period of the variable star</DESCRIPTION>
    </FIELD>
<DATA><TABLEDATA>
"""
VOTABLE_TAIL = """</TABLEDATA></DATA>
</TABLE>
<INFO name="matches" value="{n}">matching records</INFO>
</RESOURCE>
</VOTABLE>
"""


class CatalogServer:
    """MAST portal + VizieR on 127.0.0.1, counting requests; ``fail_status`` makes it fail."""

    def __init__(self) -> None:
        self.tic_rows = build_tic_sky()
        _, self.tic_fields, self.colconfig = _load_tic()
        self.vsx_rows = build_vsx_sky()
        self.counts: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {"tic": [], "vsx": []}
        self.cones: list[tuple[str, float, float, float]] = []
        self.fail_status: int | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    # MAST -------------------------------------------------------------------------------------
    async def columnsconfig(self, request: web.Request) -> web.StreamResponse:
        self.counts["colconfig"] += 1
        if self.fail_status:
            return web.Response(status=self.fail_status, text="Service Unavailable")
        form = await request.post()
        assert str(form["colConfigId"]).lower() == "mast.catalogs.tic.cone"
        return web.json_response(self.colconfig)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        self.counts["invoke"] += 1
        if self.fail_status:
            return web.Response(status=self.fail_status, text="Service Unavailable")
        form = await request.post()
        mashup = json.loads(str(form["request"]))
        if mashup["service"].lower() != "mast.catalogs.tic.cone":
            return web.json_response({"status": "ERROR", "msg": f"unknown {mashup['service']}"})
        self.counts["tic"] += 1
        self.times["tic"].append(time.monotonic())
        p = mashup["params"]
        ra, dec, radius = float(p["ra"]), float(p["dec"]), float(p["radius"])
        self.cones.append(("tic", ra, dec, radius))
        hits = [r for r in self.tic_rows if _sep_deg(ra, dec, r["ra"], r["dec"]) <= radius]
        size, page = int(mashup.get("pagesize") or 50000), int(mashup.get("page") or 1)
        pages = max(1, math.ceil(len(hits) / size))
        chunk = hits[(page - 1) * size: page * size]
        return web.json_response({
            "status": "COMPLETE", "msg": "", "fields": self.tic_fields, "data": chunk,
            "paging": {"page": page, "pageSize": size, "pagesFiltered": pages, "rows": len(chunk),
                       "rowsFiltered": len(hits), "rowsTotal": len(hits)},
        })

    # VizieR -----------------------------------------------------------------------------------
    async def vizier(self, request: web.Request) -> web.StreamResponse:
        self.counts["vsx"] += 1
        self.times["vsx"].append(time.monotonic())
        if self.fail_status:
            return web.Response(status=self.fail_status, text="Service Unavailable")
        script = (await request.read()).decode()
        args: dict[str, str] = {}
        for line in script.splitlines():
            key, _, value = line.partition("=")
            args[key] = value
        assert args["-source"] == "B/vsx/vsx"
        assert args["-out"].split(",") == ["Name", "RAJ2000", "DEJ2000", "Type", "Period"]
        target = args["-c"]
        cut = max(target.rfind("+"), target.rfind("-"))
        ra, dec = float(target[:cut]), float(target[cut:])
        unit = next(k for k in args if k.startswith("-c.r"))
        radius = float(args[unit]) / {"-c.rs": 3600.0, "-c.rm": 60.0, "-c.rd": 1.0}[unit]
        self.cones.append(("vsx", ra, dec, radius))
        hits = [r for r in self.vsx_rows if _sep_deg(ra, dec, r["RAJ2000"], r["DEJ2000"]) <= radius]
        body = VOTABLE_HEAD.format(
            max=args.get("-out.max", 50), nparams=len(args), params=escape(script),
            target=escape(target), radius=args[unit],
        )
        for r in hits:
            period = "" if r["Period"] is None else f"{r['Period']:.10f}"
            body += (f"<TR><TD>{escape(r['Name'])}</TD><TD>{r['RAJ2000']:.5f}</TD>"
                     f"<TD>{r['DEJ2000']:+.5f}</TD><TD>{r['Type']}</TD><TD>{period}</TD></TR>\n")
        body += VOTABLE_TAIL.format(n=len(hits))
        return web.Response(body=body.encode(), content_type="application/x-votable+xml")

    async def other(self, request: web.Request) -> web.StreamResponse:
        self.counts["other"] += 1
        return web.Response(status=404, text=f"no {request.path}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v0/invoke", self.invoke)
        app.router.add_post("/portal/Mashup/Mashup.asmx/columnsconfig", self.columnsconfig)
        app.router.add_post("/viz-bin/votable", self.vizier)
        app.router.add_route("*", "/{tail:.*}", self.other)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def total(self) -> int:
        """Every HTTP request received (``tic`` is a subset of ``invoke``)."""
        return sum(self.counts[k] for k in ("invoke", "colconfig", "vsx", "other"))


@pytest.fixture(autouse=True)
def no_internet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """astropy may download nothing, astroquery may cache nothing outside tmp_path, and the
    local servers are reached directly even under a proxy."""
    from astropy.config import paths
    from astropy.utils import data

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    cache = tmp_path / "astropy-cache"
    cache.mkdir()
    with paths.set_temp_cache(cache), data.conf.set_temp("allow_internet", False):
        yield
    assert not list(cache.rglob("*.pickle")), "astroquery cached a response"


@pytest.fixture
async def server() -> AsyncIterator[CatalogServer]:
    srv = CatalogServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def make_candidates(seed: int = 7) -> pd.DataFrame:
    """A candidate 2" east of every TIC star of the three fields, 30 more scattered over the
    first field, and one alone in an empty sky."""
    rows, _, _ = _load_tic()
    cands = []
    for dra, ddec in FIELD_SHIFTS:
        for r in rows:
            dec = r["dec"] + ddec
            cands.append((r["ra"] + dra + 2 / 3600 / math.cos(math.radians(dec)), dec, 14.0))
    rng = np.random.default_rng(seed)
    center_ra, center_dec = np.mean([r["ra"] for r in rows]), np.mean([r["dec"] for r in rows])
    stars = [(r["ra"], r["dec"]) for r in build_tic_sky()]
    while len(cands) < 21 + 30:  # scattered stars, none within 60" of a TIC star
        ra, dec = center_ra + rng.uniform(-0.15, 0.15), center_dec + rng.uniform(-0.15, 0.15)
        if all(_sep_deg(ra, dec, a, d) > 60 / 3600 for a, d in stars):
            cands.append((ra, dec, 13.0))
    cands.append((100.0, 30.0, 12.0))
    frame = pd.DataFrame(cands, columns=["ra", "dec", "tmag"])
    frame.insert(0, "star_id", np.arange(len(frame)) + 1000)
    frame["period"] = 1.5
    frame["var_class"] = "EB"
    frame["score"] = np.linspace(0.9, 0.4, len(frame))
    frame["amplitude"] = 0.1
    frame["snr"] = 20.0
    return frame


def config_for(server: CatalogServer, tmp_path: Path, **kwargs: Any) -> EnrichmentConfig:
    defaults: dict[str, Any] = dict(
        cache_dir=tmp_path / "cache", mast_server=server.url, vizier_server=server.url,
        max_queries_per_s=200.0, backoff_s=0.01, timeout_s=5.0,
    )
    defaults.update(kwargs)
    return EnrichmentConfig(**defaults)


def row_of(out: pd.DataFrame, tic_id: int) -> pd.Series:
    hit = out[out["tic_id"] == tic_id]
    assert len(hit) == 1, f"TIC {tic_id} matched {len(hit)} candidates"
    return hit.iloc[0]


# -- tests -------------------------------------------------------------------------------------

async def test_batched_tic_and_vsx_enrichment(server: CatalogServer, tmp_path: Path) -> None:
    cands = make_candidates()
    out, status = await asyncio.to_thread(enrich_candidates, cands, config_for(server, tmp_path))

    assert status == "tic"
    # 52 candidates in 4 sky groups: 4 TIC cones (+1 column-config fetch), 4 VSX cones.
    assert len(cands) == 52
    assert server.counts["tic"] == 4 and server.counts["colconfig"] == 1
    assert server.counts["vsx"] == 4 and server.counts["other"] == 0
    assert out.attrs["enrichment"]["cones"] == 4
    # Every cone covers its members plus the aperture.
    for kind, ra, dec, radius in server.cones:
        inside = [_sep_deg(ra, dec, a, d) + 42 / 3600 <= radius + 1e-9
                  for a, d in zip(cands["ra"], cands["dec"], strict=True)]
        assert sum(inside) >= 1, kind
    covered = sum(
        any(_sep_deg(ra, dec, a, d) + 42 / 3600 <= radius + 1e-9
            for kind, ra, dec, radius in server.cones if kind == "tic")
        for a, d in zip(cands["ra"], cands["dec"], strict=True)
    )
    assert covered == len(cands)

    # Shape: input preserved, columns added with their dtypes.
    assert out["star_id"].tolist() == cands["star_id"].tolist()
    assert list(out.columns[: len(cands.columns)]) == list(cands.columns)
    for name, dtype in ENRICHMENT_COLUMNS.items():
        assert str(out[name].dtype) == dtype, name

    # The 21 stars each matched by the candidate 2" away, with TIC magnitudes.
    rows, _, _ = _load_tic()
    for k in range(3):
        for r in rows:
            hit = row_of(out, r["ID"] + k * 100_000_000_000)
            assert hit["tic_sep_arcsec"] == pytest.approx(2.0, abs=0.05)
            assert hit["tic_tmag"] == pytest.approx(r["Tmag"])
            assert np.isnan(hit["tic_teff"])  # Teff is null in the real rows
    lonely = out.iloc[-1]
    assert pd.isna(lonely["tic_id"]) and np.isnan(lonely["tic_sep_arcsec"])
    assert lonely["n_brighter_neighbours"] == 0 and not lonely["known"]

    # Blend: the 10.5 mag star 30" from TIC 10000732589 (16.3 mag) is counted, the 18.9 mag
    # one 35" away is not; the shifted copies of that star have no neighbour.
    assert row_of(out, 10000732589)["n_brighter_neighbours"] == 1
    assert row_of(out, 10000732589 + 100_000_000_000)["n_brighter_neighbours"] == 0
    assert row_of(out, 10000732652)["n_brighter_neighbours"] == 0

    # VSX: the known variable, and new stars.
    known = row_of(out, VSX_STAR_ID)
    assert bool(known["known"]) is True
    assert known["vsx_name"] == VSX_NAME and known["vsx_type"] == "EW"
    assert known["vsx_period"] == pytest.approx(0.3634270)
    assert int(out["known"].sum()) == 1
    new = row_of(out, 10000732652)
    assert bool(new["known"]) is False and pd.isna(new["vsx_name"]) and np.isnan(new["vsx_period"])
    # The copy of the variable's star in another field is a new star.
    assert bool(row_of(out, VSX_STAR_ID + 100_000_000_000)["known"]) is False


async def test_rerun_is_served_from_cache(server: CatalogServer, tmp_path: Path) -> None:
    cands = make_candidates()
    config = config_for(server, tmp_path)
    first, _ = await asyncio.to_thread(enrich_candidates, cands, config)
    asked = server.total
    assert asked == 9
    assert len(list((tmp_path / "cache" / "tic").glob("*.parquet"))) == 4
    assert len(list((tmp_path / "cache" / "vsx").glob("*.parquet"))) == 4

    second, status = await asyncio.to_thread(enrich_candidates, cands, config)
    assert server.total == asked  # nothing asked twice
    assert status == "tic"
    pd.testing.assert_frame_equal(first, second)

    # A subset clusters differently, but its cones lie inside cached ones: still no request.
    subset = cands.iloc[[0, 3, 5, 30]].reset_index(drop=True)
    part, status = await asyncio.to_thread(enrich_candidates, subset, config)
    assert server.total == asked and status == "tic"
    assert part["tic_id"].tolist() == first.iloc[[0, 3, 5, 30]]["tic_id"].tolist()

    # Offline with no catalog files: the complete cache answers, the network is not touched.
    offline, status = await asyncio.to_thread(
        enrich_candidates, cands, config_for(server, tmp_path, offline=True)
    )
    assert status == "offline" and server.total == asked
    assert offline["tic_id"].tolist() == first["tic_id"].tolist()
    assert offline["known"].tolist() == first["known"].tolist()


async def test_mast_outage_falls_back_to_catalog_files(
    server: CatalogServer, tmp_path: Path
) -> None:
    server.fail_status = 503
    cands = make_candidates()
    catalog = tmp_path / "local.csv"
    rows, _, _ = _load_tic()
    pd.DataFrame(
        {"id": [r["ID"] for r in rows], "ra": [r["ra"] for r in rows],
         "dec": [r["dec"] for r in rows], "Tmag": [r["Tmag"] for r in rows],
         "teff": [5000.0 + i for i in range(len(rows))]}
    ).to_csv(catalog, index=False)

    config = config_for(server, tmp_path, catalog_files=(catalog,), max_attempts=3)
    out, status = await asyncio.to_thread(enrich_candidates, cands, config)
    assert status == "offline"
    # The first cone's attempts, then no more: the outage is not hammered cone after cone.
    assert server.counts["colconfig"] + server.counts["invoke"] == 3
    assert server.counts["vsx"] == 3
    hit = row_of(out, 10000732589)
    assert hit["tic_teff"] == 5000.0 and hit["tic_sep_arcsec"] == pytest.approx(2.0, abs=0.05)
    assert out["tic_id"].notna().sum() == len(rows)  # only field A is in the local catalog
    assert out["known"].isna().all()  # VizieR was down too: unknown, not "new"
    assert not list((tmp_path / "cache" / "tic").glob("*.parquet"))  # failures are not cached


async def test_mast_stopped_leaves_tic_columns_null(server: CatalogServer, tmp_path: Path) -> None:
    await server.stop()  # connection refused
    cands = make_candidates()
    out, status = await asyncio.to_thread(enrich_candidates, cands, config_for(server, tmp_path))
    assert status == "unenriched"
    for name in ENRICHMENT_COLUMNS:
        assert out[name].isna().all(), name
    assert len(out) == len(cands)


async def test_mast_down_vizier_up(server: CatalogServer, tmp_path: Path) -> None:
    dead = CatalogServer()
    await dead.start()
    await dead.stop()
    cands = make_candidates()
    config = config_for(server, tmp_path, mast_server=dead.url, max_attempts=2)
    out, status = await asyncio.to_thread(enrich_candidates, cands, config)
    assert status == "unenriched" and out["tic_id"].isna().all()
    assert server.counts["vsx"] == 4
    assert int(out["known"].sum()) == 1 and out["known"].notna().all()


async def test_offline_mode_with_csv_never_touches_the_network(
    server: CatalogServer, tmp_path: Path
) -> None:
    catalog = tmp_path / "stars.csv"
    catalog.write_text(
        "id,ra,dec,tmag\n"
        "1,150.000000,2.000000,12.0\n"
        "2,150.000000,2.008333,9.0\n"   # 30" north of 1, brighter: a blend
        "3,150.300000,2.000000,11.0\n"
    )
    cands = pd.DataFrame({"star_id": [1, 2, 3], "ra": [150.0003, 150.3, 151.0],
                          "dec": [2.0, 2.0001, 2.0], "tmag": [12.1, 11.0, 10.0]})
    config = config_for(server, tmp_path, offline=True, catalog_files=(catalog,))
    out, status = await asyncio.to_thread(enrich_candidates, cands, config)
    assert status == "offline"
    assert server.total == 0
    assert out["tic_id"].tolist() == [1, 3, pd.NA]
    assert out["n_brighter_neighbours"].tolist() == [1, 0, 0]
    assert out["tic_sep_arcsec"].iloc[0] == pytest.approx(1.08, abs=0.01)
    assert out["known"].isna().all()

    # Offline without files or a cache: nothing to match against, and still no request.
    bare, status = await asyncio.to_thread(
        enrich_candidates, cands, config_for(server, tmp_path / "other", offline=True)
    )
    assert status == "unenriched" and bare["tic_id"].isna().all() and server.total == 0


async def test_rate_limit_spaces_queries(server: CatalogServer, tmp_path: Path) -> None:
    config = config_for(server, tmp_path, max_queries_per_s=8.0)
    await asyncio.to_thread(enrich_candidates, make_candidates(), config)
    for kind in ("tic", "vsx"):
        gaps = np.diff(server.times[kind])
        assert len(gaps) == 3 and gaps.min() >= 1 / 8.0 - 0.02, (kind, gaps)


def test_empty_candidates(tmp_path: Path) -> None:
    empty = pd.DataFrame({"star_id": [], "ra": [], "dec": []})
    out, status = enrich_candidates(empty, EnrichmentConfig(tmp_path, mast_server="http://127.0.0.1:9"))
    assert status == "tic" and list(out.columns)[3:] == list(ENRICHMENT_COLUMNS)


def test_clustering_caps_cone_radius() -> None:
    rng = np.random.default_rng(1)
    ra = rng.uniform(100, 104, 400)
    dec = rng.uniform(-20, -16, 400)
    groups = cluster_positions(ra, dec, pad_arcsec=42.0, max_radius_deg=0.5)
    seen = np.concatenate([m for _, m in groups])
    assert sorted(seen.tolist()) == list(range(400))  # each position in exactly one cone
    for cone, members in groups:
        assert cone.radius_arcsec <= 0.5 * 3600
        for i in members:
            assert _sep_deg(cone.ra, cone.dec, ra[i], dec[i]) * 3600 + 42 <= cone.radius_arcsec
    # 16 square degrees in 0.5-degree cones: far fewer cones than stars.
    assert len(groups) < 60
    # Across RA = 0 the group stays one cone.
    wrap = cluster_positions([359.99, 0.01], [0.0, 0.0], pad_arcsec=42.0)
    assert len(wrap) == 1 and wrap[0][0].radius_arcsec < 120
