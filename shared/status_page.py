"""The read-only status web page every service serves at ``GET /`` (and ``/ui``).

It shows each job known to the services of this process: FFIs fetched, measured, stored and
failed (with the reasons), stars, queue depths, rate and ETA, and, once a job's
``candidates.parquet`` is on this process's disk, its top candidates with their phase-folded
light curves drawn as inline SVG.

The page is one static HTML document with a little JavaScript (no external asset: it works
with no network) that polls ``/status`` (JSON) every two seconds and
``/ui/candidates`` (an HTML fragment rendered here) every ten. Rendering the candidates reads
Parquet, so it runs in a worker thread and is cached per ``candidates.parquet`` version: a
completed job's files are read once, however many browsers poll.

Examples
--------
>>> svg = phase_folded_svg([0.0, 0.3, 0.6, 0.9, 1.2], [1.0, 0.9, 1.0, 0.9, 1.0], period=0.6)
>>> svg.startswith("<svg") and "phase" in svg
True
>>> job_target("s0070-1-4")
(70, 1, 4)
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from .config import output_dir
from .quality import good_mask

__all__ = [
    "INDEX_HTML",
    "TOP_CANDIDATES",
    "add_status_page",
    "job_target",
    "phase_folded_svg",
    "render_candidates",
]

#: Candidates shown per job (each one reads its light curve from the photometry dataset).
TOP_CANDIDATES = 5
#: Points drawn per light curve at most (every Kth point beyond that).
MAX_POINTS = 1500
_JOB_ID = re.compile(r"^s(\d{1,4})-(\d)-(\d)$")
_CACHE_SIZE = 16
_cache: OrderedDict[tuple[str, int, int], str] = OrderedDict()
_pending: dict[tuple[str, int, int], asyncio.Future[str]] = {}


def job_target(job_id: str) -> tuple[int, int, int] | None:
    """(sector, camera, ccd) of a job id such as ``s0070-1-4`` (None if it is not one)."""
    match = _JOB_ID.match(job_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


# -- light curves as SVG ----------------------------------------------------------------------

def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def phase_folded_svg(
    btjd: Sequence[float] | np.ndarray,
    flux: Sequence[float] | np.ndarray,
    period: float | None,
    *,
    width: int = 300,
    height: int = 110,
) -> str:
    """A small light-curve plot: folded on ``period`` (minimum at phase 0.5), or flux against
    time when there is no period. Points are one ``<path>`` of dots, with a binned median."""
    t = np.asarray(btjd, dtype=float)
    f = np.asarray(flux, dtype=float)
    ok = np.isfinite(t) & np.isfinite(f)
    t, f = t[ok], f[ok]
    left, right, top, bottom = 8, 8, 8, 20
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lc" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>',
    ]
    folded = period is not None and math.isfinite(period) and period > 0
    if len(t) < 2:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text>')
        parts.append("</svg>")
        return "".join(parts)
    median = float(np.median(f))
    if median != 0 and math.isfinite(median):
        f = f / median
    if folded:
        assert period is not None
        t0 = t[int(np.argmin(f))]
        x = np.mod((t - t0) / period + 0.5, 1.0)
        x_lo, x_hi = 0.0, 1.0
        label = f"phase (P = {period:.5g} d)"
    else:
        x = t
        x_lo, x_hi = float(t.min()), float(t.max())
        label = "BTJD (no period)"
    y_lo, y_hi = (float(v) for v in np.percentile(f, [0.5, 99.5]))
    pad = 0.08 * (y_hi - y_lo) or 1e-3
    y_lo, y_hi = y_lo - pad, y_hi + pad
    px = left + (x - x_lo) / ((x_hi - x_lo) or 1.0) * pw
    py = top + (1.0 - (np.clip(f, y_lo, y_hi) - y_lo) / (y_hi - y_lo)) * ph
    step = max(1, math.ceil(len(px) / MAX_POINTS))
    dots = "".join(f"M{a:.1f} {b:.1f}h0" for a, b in zip(px[::step], py[::step], strict=True))
    drawn = math.ceil(len(px) / step)
    dot = 4.0 if drawn < 150 else 3.0 if drawn < 600 else 2.2
    parts.append(f'<path class="pts" stroke-width="{dot}" d="{dots}"/>')
    n_bins = min(50, len(x) // 6)
    if folded and n_bins >= 10:
        bins = np.linspace(0.0, 1.0, n_bins + 1)
        idx = np.digitize(x, bins) - 1
        line = []
        for i in range(n_bins):
            sel = f[idx == i]
            if len(sel):
                bx = left + (bins[i] + bins[i + 1]) / 2 * pw
                by = top + (1.0 - (np.clip(np.median(sel), y_lo, y_hi) - y_lo) / (y_hi - y_lo)) * ph
                line.append(f"{bx:.1f},{by:.1f}")
        parts.append(f'<polyline class="bin" points="{" ".join(line)}"/>')
    parts.append(
        f'<text x="{left}" y="{height - 6}">{html.escape(label)}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">'
        f"flux {_fmt(y_lo)}–{_fmt(y_hi)}</text></svg>"
    )
    return "".join(parts)


# -- candidates of a job ----------------------------------------------------------------------

def _cell(value: Any, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return html.escape(format(value, spec))
    except (TypeError, ValueError):
        return html.escape(str(value))


def render_candidates(out: Path, job_id: str, top: int = TOP_CANDIDATES) -> str:
    """The HTML of a job's top candidates with their light curves ('' without candidates)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    path = out / "candidates.parquet"
    if not path.is_file():
        return ""
    table = pq.read_table(path)
    n_total = table.num_rows
    rows = table.to_pylist()
    rows.sort(key=lambda r: (-(r.get("score") or 0.0), r.get("star_id") or 0))
    rows = rows[:top]
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    phot = out / "photometry.parquet"
    if rows and phot.exists():
        ids = [int(r["star_id"]) for r in rows]
        dataset = ds.dataset(phot, format="parquet")
        lc = dataset.to_table(columns=["star_id", "btjd", "flux", "quality"],
                              filter=ds.field("star_id").isin(ids))
        star = lc.column("star_id").to_numpy()
        btjd = lc.column("btjd").to_numpy()
        flux = lc.column("flux").to_numpy(zero_copy_only=False).astype(float)
        good = good_mask(lc.column("quality").to_numpy())
        order = np.argsort(btjd, kind="stable")
        star, btjd, flux, good = star[order], btjd[order], flux[order], good[order]
        for sid in ids:
            sel = star == sid
            use = sel & good if np.count_nonzero(sel & good) >= 5 else sel
            curves[sid] = (btjd[use], flux[use])
    body = []
    for rank, r in enumerate(rows, 1):
        sid = int(r["star_id"])
        period = r.get("period")
        btjd, flux = curves.get(sid, (np.array([]), np.array([])))
        catalog = r.get("catalog_id")
        catalog_text = f"{r.get('catalog') or ''} {catalog}" if catalog is not None else "–"
        body.append(
            "<tr>"
            f"<td>{rank}</td><td>{sid}</td><td><b>{_cell(r.get('var_class'))}</b></td>"
            f"<td>{_cell(period, '.5g')}</td><td>{_cell(r.get('score'), '.3f')}</td>"
            f"<td>{_cell(r.get('amplitude'), '.3g')}</td><td>{_cell(r.get('tmag'), '.2f')}</td>"
            f"<td>{_cell(r.get('ra'), '.4f')} {_cell(r.get('dec'), '+.4f')}</td>"
            f"<td>{html.escape(catalog_text)}</td>"
            f"<td>{phase_folded_svg(btjd, flux, period)}</td>"
            "</tr>"
        )
    head = (
        f'<h3>{html.escape(job_id)} <span class="dim">top {len(rows)} of {n_total} candidates · '
        f"{html.escape(str(out))}</span></h3>"
    )
    if not rows:
        return f'<section class="cands" data-job="{html.escape(job_id)}">{head}</section>'
    return (
        f'<section class="cands" data-job="{html.escape(job_id)}">{head}'
        "<table><thead><tr><th>#</th><th>star</th><th>class</th><th>period (d)</th>"
        "<th>score</th><th>amplitude</th><th>Tmag</th><th>RA Dec (deg)</th><th>catalog</th>"
        "<th>light curve</th></tr></thead><tbody>" + "".join(body) + "</tbody></table></section>"
    )


async def _candidates_html(out: Path, job_id: str) -> str:
    """:func:`render_candidates` in a thread, cached per version of ``candidates.parquet``."""
    try:
        stat = (out / "candidates.parquet").stat()
    except OSError:
        return ""
    key = (str(out), stat.st_mtime_ns, stat.st_size)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    pending = _pending.get(key)
    if pending is not None:  # another poll is rendering it: share the result
        return await asyncio.shield(pending)
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    _pending[key] = future
    try:
        try:
            text = await asyncio.to_thread(render_candidates, out, job_id)
        except Exception as exc:  # noqa: BLE001 - an odd file must not break the page
            text = (f'<section class="cands"><h3>{html.escape(job_id)}</h3>'
                    f'<p class="bad">cannot read candidates: {html.escape(str(exc))}</p></section>')
        else:
            _cache[key] = text
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        future.set_result(text)
        return text
    finally:
        _pending.pop(key, None)
        if not future.done():  # this request was cancelled: the waiters give up too
            future.cancel()


# -- HTTP -------------------------------------------------------------------------------------

def add_status_page(app: web.Application, services_key: web.AppKey[Any]) -> None:
    """Register ``GET /``, ``GET /ui`` and ``GET /ui/candidates`` on a status application.

    ``services_key`` is the application key of the process's services (each has ``jobs``
    and ``settings.data_dir``)."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX_HTML, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def candidates(request: web.Request) -> web.Response:
        services = request.app[services_key]
        dirs = {Path(s.settings.data_dir) for s in services}
        jobs = sorted({job_id for s in services for job_id in s.jobs})
        sections = []
        for job_id in jobs:
            target = job_target(job_id)
            if target is None:
                continue
            for data_dir in sorted(dirs):
                with contextlib.suppress(Exception):
                    text = await _candidates_html(output_dir(data_dir, *target), job_id)
                    if text:
                        sections.append(text)
        return web.Response(text="".join(sections), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    app.router.add_get("/", index)
    app.router.add_get("/ui", index)
    app.router.add_get("/ui/candidates", candidates)


INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tess-ffi status</title>
<style>
  :root { --fg:#1d2330; --dim:#6b7385; --line:#dde1ea; --bg:#f6f7fa; --card:#fff;
          --accent:#2f6fde; --ok:#1f9d55; --bad:#c8372d; --warn:#c98a0a; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
         color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:baseline; gap:16px; padding:12px 20px;
           background:#1d2330; color:#fff; }
  header h1 { font-size:18px; margin:0; }
  header .dim { color:#aab2c5; }
  main { padding:12px 20px 30px; }
  section.card { background:var(--card); border:1px solid var(--line); border-radius:6px;
                 padding:10px 14px; margin:0 0 12px; }
  h2 { font-size:15px; margin:0 0 8px; }
  h3 { font-size:14px; margin:8px 0 6px; }
  table { border-collapse:collapse; width:100%; }
  th, td { text-align:left; padding:3px 7px; border-bottom:1px solid var(--line);
           vertical-align:middle; white-space:nowrap; }
  th { color:var(--dim); font-weight:600; font-size:12px; }
  td.states { white-space:normal; max-width:270px; }
  td.states .pill { margin:1px 4px 1px 0; }
  .scroll { overflow-x:auto; }
  td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
  .dim { color:var(--dim); font-weight:normal; font-size:12px; }
  .pill { display:inline-block; padding:0 7px; border-radius:9px; font-size:12px;
          background:#e8ecf4; margin-right:4px; }
  .pill.ok { background:#dcf3e5; color:var(--ok); }
  .pill.bad { background:#fbe3e1; color:var(--bad); }
  .bar { width:110px; height:10px; background:#e8ecf4; border-radius:5px; overflow:hidden;
         display:inline-block; vertical-align:middle; }
  .bar > span { display:block; height:100%; background:var(--accent); }
  .bad { color:var(--bad); }
  .grid { display:grid; grid-template-columns: 1fr 1fr; gap:12px; }
  details summary { cursor:pointer; color:var(--bad); }
  details li { white-space:normal; }
  svg.lc { background:#fbfcfe; display:block; }
  svg.lc .frame { fill:none; stroke:var(--line); }
  svg.lc .pts { stroke:#33405c; stroke-linecap:round; opacity:.6; fill:none; }
  svg.lc .bin { stroke:var(--bad); stroke-width:1.6; fill:none; }
  svg.lc text { font-size:10px; fill:var(--dim); }
</style>
</head>
<body>
<header>
  <h1>tess-ffi</h1>
  <span id="summary" class="dim">loading…</span>
  <span id="updated" class="dim" style="margin-left:auto"></span>
</header>
<main>
  <noscript><p class="bad">This page needs JavaScript; the raw data is at
    <a href="status">/status</a>.</p></noscript>
  <section class="card">
    <h2>Jobs <span class="dim">known to the services of this process</span></h2>
    <div class="scroll"><table id="jobs"><thead><tr>
      <th>job</th><th>state</th><th>progress</th>
      <th class="num">expected</th><th class="num">fetched</th><th class="num">measured</th>
      <th class="num">stored</th><th class="num">failed</th><th class="num">stars</th>
      <th class="num">analysed</th><th class="num">rate</th><th class="num">ETA</th>
    </tr></thead><tbody><tr><td colspan="12" class="dim">no job yet</td></tr></tbody></table></div>
    <div id="failures"></div>
  </section>
  <div class="grid">
    <section class="card">
      <h2>Services</h2>
      <table id="services"><thead><tr><th>service</th><th>ready</th>
        <th class="num">busy</th><th class="num">uptime</th><th>counters</th></tr></thead>
        <tbody></tbody></table>
    </section>
    <section class="card">
      <h2>Queues <span class="dim" id="bus"></span></h2>
      <table id="queues"><thead><tr><th>queue</th><th class="num">messages</th><th></th></tr>
      </thead><tbody></tbody></table>
    </section>
  </div>
  <section class="card">
    <h2>Top candidates <span class="dim">phase-folded light curves (red: binned median)</span></h2>
    <div id="candidates"><p class="dim">Candidates appear here when a job completes and its
      outputs are on this process's disk.</p></div>
  </section>
</main>
<script>
"use strict";
const POLL_MS = 2000, CANDIDATES_MS = 10000;
const history = {};            // job id -> [[time s, done]], for rate and ETA
let lastCandidates = 0, lastCompleted = "";

const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
function esc(v) { return String(v).replace(/[&<>"']/g, c => ENTITIES[c]); }
function num(v) { return (v === undefined || v === null || v === "") ? "–" : esc(v); }
function duration(s) {
  if (!isFinite(s) || s < 0) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function count(v) { return (v && typeof v === "object") ? Object.keys(v).length : (v || 0); }

// One row per job id, merging what each service of this process knows about it.
function mergeJobs(status) {
  const jobs = {};
  for (const [name, svc] of Object.entries(status.services || {})) {
    for (const [id, rec] of Object.entries(svc.jobs || {})) {
      const j = jobs[id] || (jobs[id] = {id: id, states: {}, failures: {}});
      j.run_id = rec.run_id || j.run_id;
      if (rec.state) j.states[name] = rec.state;
      if (rec.error) j.error = rec.error;
      if (name === "fetcher") {
        j.fetched = rec.fetched; j.expected = rec.expected ?? j.expected;
        j.fetch_rate = rec.rate_per_s; j.already = rec.already_stored;
        if (typeof rec.stars === "number") j.stars = rec.stars;
      }
      if (name === "photometer") { j.measured = rec.measured; j.current = rec.current; }
      if (name === "aggregator") {
        j.stored = rec.stored; j.expected = rec.expected ?? j.expected;
        if (rec.n_stars !== undefined) j.stars = j.stars ?? rec.n_stars;
      }
      if (name === "analyzer") { j.analyzed = rec.analyzed; j.stars = j.stars ?? rec.n_stars; }
      if (name === "enricher") {
        j.results = rec.results; j.candidates = rec.candidates;
        if (rec.state === "completed") j.completed = true;
      }
      if (rec.failed && typeof rec.failed === "object") Object.assign(j.failures, rec.failed);
    }
  }
  return Object.values(jobs).sort((a, b) => a.id.localeCompare(b.id));
}

function progressOf(j) {
  // The furthest stage this process sees: stored (aggregator), else measured, else fetched.
  const done = j.stored ?? j.measured ?? j.fetched;
  return done === undefined ? null : done;
}

function renderJobs(status) {
  const now = Date.now() / 1000, jobs = mergeJobs(status), rows = [], fails = [];
  for (const j of jobs) {
    const done = progressOf(j), failed = count(j.failures);
    const expected = j.expected || 0;
    let rate = NaN, eta = NaN;
    if (done !== null) {
      const h = history[j.id] || (history[j.id] = []);
      h.push([now, done]);
      while (h.length > 2 && now - h[0][0] > 60) h.shift();
      if (h.length > 1 && h[h.length - 1][0] > h[0][0])
        rate = (h[h.length - 1][1] - h[0][1]) / (h[h.length - 1][0] - h[0][0]);
      if (!(rate > 0) && j.fetch_rate) rate = j.fetch_rate;
      const left = expected - done - failed;
      eta = left <= 0 ? 0 : (rate > 0 ? left / rate : NaN);
    }
    const frac = expected ? Math.min(1, ((done || 0) + failed) / expected) : 0;
    const states = Object.entries(j.states).map(([s, st]) => {
      const cls = st === "completed" ? "ok" : (st === "failed" ? "bad" : "");
      return `<span class="pill ${cls}">${esc(s)}: ${esc(st)}</span>`;
    }).join("");
    const error = j.error ? ` <span class="bad">${esc(j.error)}</span>` : "";
    rows.push(`<tr data-job="${esc(j.id)}"><td><b>${esc(j.id)}</b><br>` +
      `<span class="dim">run ${esc(j.run_id || "")}</span></td>` +
      `<td class="states">${states}${error}</td>` +
      `<td><span class="bar"><span style="width:${(100 * frac).toFixed(1)}%"></span></span> ` +
      `<span class="dim">${(100 * frac).toFixed(0)}%</span></td>` +
      `<td class="num">${num(j.expected)}</td><td class="num fetched">${num(j.fetched)}</td>` +
      `<td class="num measured">${num(j.measured)}</td>` +
      `<td class="num stored">${num(j.stored)}</td>` +
      `<td class="num ${failed ? "bad" : ""}">${failed}</td><td class="num">${num(j.stars)}</td>` +
      `<td class="num">${num(j.analyzed ?? j.results)}</td>` +
      `<td class="num">${rate > 0 ? rate.toFixed(2) + " FFI/s" : "–"}</td>` +
      `<td class="num">${j.completed ? "done" : duration(eta)}</td></tr>`);
    const reasons = Object.entries(j.failures);
    if (reasons.length) {
      fails.push(`<details><summary>${esc(j.id)}: ${reasons.length} failed FFI(s)</summary><ul>` +
        reasons.slice(0, 50).map(([c, r]) => `<li>cadence ${esc(c)}: ${esc(r)}</li>`).join("") +
        (reasons.length > 50 ? `<li>… ${reasons.length - 50} more</li>` : "") + "</ul></details>");
    }
    if (j.completed && !lastCompleted.includes(j.id + j.run_id)) {
      lastCompleted += j.id + j.run_id + " "; lastCandidates = 0;   // fetch the candidates now
    }
  }
  document.querySelector("#jobs tbody").innerHTML =
    rows.join("") || '<tr><td colspan="12" class="dim">no job yet</td></tr>';
  document.getElementById("failures").innerHTML = fails.join("");
  return jobs;
}

function renderServices(status) {
  const rows = Object.entries(status.services || {}).map(([name, s]) => {
    const counters = Object.entries(s.counters || {})
      .map(([k, v]) => `${esc(k)} ${esc(v)}`).join(", ");
    return `<tr><td>${esc(name)}</td><td><span class="pill ${s.ready ? "ok" : "bad"}">` +
      `${s.ready ? "ready" : "not ready"}</span></td><td class="num">${num(s.busy)}</td>` +
      `<td class="num">${duration(s.uptime_s)}</td>` +
      `<td class="dim" style="white-space:normal">${counters}</td></tr>`;
  });
  document.querySelector("#services tbody").innerHTML = rows.join("");
  const queues = Object.entries(status.queues || {}).sort();
  const top = Math.max(8, ...queues.map(q => q[1]));
  document.querySelector("#queues tbody").innerHTML = queues.map(([q, n]) =>
    `<tr><td>${esc(q)}</td><td class="num">${esc(n)}</td><td><span class="bar">` +
    `<span style="width:${(100 * n / top).toFixed(1)}%"></span></span></td></tr>`).join("") ||
    '<tr><td colspan="3" class="dim">no queue</td></tr>';
  document.getElementById("bus").textContent =
    `${status.transport} · ${status.connected ? "connected" : "disconnected"} · ` +
    `retried ${status.retried} · dead-lettered ${status.dead_lettered}`;
}

async function refreshCandidates() {
  lastCandidates = Date.now();
  try {
    const r = await fetch("ui/candidates", {cache: "no-store"});
    const text = await r.text();
    if (text.trim()) document.getElementById("candidates").innerHTML = text;
  } catch (e) { /* the next poll tries again */ }
}

async function poll() {
  try {
    const r = await fetch("status", {cache: "no-store"});
    const status = await r.json();
    const jobs = renderJobs(status);
    renderServices(status);
    const running = jobs.filter(j => !j.completed).length;
    document.getElementById("summary").textContent =
      `${Object.keys(status.services || {}).join(", ")} · ` +
      `${jobs.length} job(s), ${running} running`;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (Date.now() - lastCandidates > CANDIDATES_MS) await refreshCandidates();
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach /status: " + e;
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body>
</html>
"""
