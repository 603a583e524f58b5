"""The KPI pages: comparison across cities, one indicator's trend, the solutions catalogue.

Built on the shared web shell (``urbanmim/web``, see docs/web.md): server-rendered, no script
needed, charts as inline SVG (:mod:`urbanmim.kpi.charts`) with a table of the same numbers
beside each. The pages read through the same functions as ``/kpi/v1`` (comparison, trends,
solutions), so a page can never show a number the API would not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData
from urbanmim.kpi import charts, compare, engine, quality, solutions, values
from urbanmim.kpi.api import may_write
from urbanmim.kpi.catalogue import DIMENSIONS, builtin, find_builtin, slug
from urbanmim.kpi.formulas import FORMULAS
from urbanmim.kpi.periods import parse_period
from urbanmim.web.shell import web_of

HERE = Path(__file__).resolve().parent
DIMENSION_KEYS = {"Economy": "kpi.dim.economy", "Environment": "kpi.dim.environment",
                  "Society and Culture": "kpi.dim.society"}


def _scores(row: compare.Indicator) -> dict[str, float | None]:
    """0..100 per city for the radar: % of target where the KPI has one, else % of the best city's value."""
    vals = {e.tenant: e.value for e in row.entries if e.value is not None}
    out: dict[str, float | None] = {}
    for e in row.entries:
        if e.achievement is not None:
            out[e.tenant] = e.achievement
        elif e.value is None or not vals:
            out[e.tenant] = None
        elif row.direction == "higher":
            best = max(vals.values())
            out[e.tenant] = 100.0 if best <= 0 else max(0.0, e.value / best * 100)
        else:
            best = min(vals.values())
            out[e.tenant] = 100.0 if e.value <= 0 else max(0.0, min(100.0, best / e.value * 100))
    return out


async def comparison_page(request: Request) -> Response:
    web = web_of(request.app)
    lang = web.language(request)

    def t(key: str, **kw: Any) -> str:
        return web.catalogues.t(lang, key, **kw)
    p = request.query_params
    period = p.get("period") or None
    normalise = p.get("normalise", "none")
    if normalise not in compare.NORMALISATIONS:
        raise BadRequestData(f"normalise must be one of {', '.join(compare.NORMALISATIONS)}")
    tenants = [x for x in (p.get("tenants") or "").split(",") if x] or await request.app.state.store.tenants()
    rows = await compare.comparison(request.app, tenants=tenants, period=period, normalise=normalise)
    cities = sorted({e.tenant for r in rows for e in r.entries})
    periods: set[str] = set()
    for tnt in cities:
        periods |= {v.period for v in await values.load(request.app, tnt)}
    groups = []
    for dim in DIMENSIONS:
        dim_rows = [r for r in rows if r.dimension == dim]
        if not dim_rows:
            continue
        bars = []
        for r in dim_rows:
            label = _label(r)
            items = [(e.tenant, e.value, quality.LABELS.get(e.quality, e.quality)) for e in r.entries]
            bars.append((label, r.unit, charts.bar_chart(t("kpi.chart.bar.title", indicator=label),
                                         t("kpi.chart.bar.desc", indicator=label, unit=r.unit), items, r.unit,
                                         order=cities)))
        radar = None
        if len(dim_rows) >= 3 and cities:
            scores = [_scores(r) for r in dim_rows]
            radar = charts.radar(t("kpi.chart.radar.title", dimension=t(DIMENSION_KEYS[dim])),
                                 t("kpi.chart.radar.desc"), [_short(r) for r in dim_rows],
                                 [(c, [s.get(c) for s in scores]) for c in cities])
        groups.append({"dimension": dim, "key": DIMENSION_KEYS[dim], "rows": dim_rows, "bars": bars, "radar": radar,
                       "scores": [_scores(r) for r in dim_rows]})
    computable = sum(1 for d in builtin() if d.code in FORMULAS)
    return web.render(request, "kpi/index.html", {
        "groups": groups, "cities": cities, "period": period or "", "periods": sorted(periods, reverse=True),
        "normalise": normalise, "normalisations": compare.NORMALISATIONS, "levels": quality.LEVELS,
        "computable": computable, "catalogue_size": len(builtin()), "indicators": len(rows),
        "label": _label, "fmt": charts.fmt, "slug": slug, "quality_labels": quality.LABELS,
    }, section="kpi")


def _label(r: compare.Indicator) -> str:
    return r.name + (f" — {r.component.upper().replace('PM25', 'PM2.5')}" if r.component else "")


def _short(r: compare.Indicator) -> str:
    name = r.name if len(r.name) <= 22 else r.name[:20] + "…"
    return name + (f" {r.component.upper().replace('PM25', 'PM2.5')}" if r.component else "")


async def indicator_page(request: Request) -> Response:
    web = web_of(request.app)
    lang = web.language(request)
    p = request.query_params
    code = p.get("kpi") or ""
    d = find_builtin(code)
    if d is None:
        raise BadRequestData(f"kpi must be a catalogue KPI code, not {code!r}")
    component = p.get("component", "")
    cities = await request.app.state.store.tenants()
    by_city: dict[str, dict[str, values.KpiValue]] = {}
    for tnt in cities:
        vs = [v for v in await values.load(request.app, tnt, code=d.code) if v.component == component]
        if vs:
            by_city[tnt] = {v.period: v for v in vs}
    periods = sorted({per for m in by_city.values() for per in m}, key=lambda x: parse_period(x).start)
    unit = next((v.unit for m in by_city.values() for v in m.values()), d.unit)
    label = d.name + (f" — {component.upper()}" if component else "")
    trend = charts.line_chart(web.catalogues.t(lang, "kpi.chart.line.title", indicator=label),
                              web.catalogues.t(lang, "kpi.chart.line.desc", unit=unit), periods,
                              [(c, [_value(m.get(per)) for per in periods]) for c, m in sorted(by_city.items())],
                              unit)
    rows = await compare.comparison(request.app, tenants=cities, codes=[d.code])
    row = next((r for r in rows if r.component == component), None)
    f = FORMULAS.get(d.code)
    return web.render(request, "kpi/indicator.html", {
        "d": d, "component": component, "label": label, "unit": unit, "periods": periods, "by_city": by_city,
        "trend": trend, "row": row, "formula": f, "fmt": charts.fmt, "quality_labels": quality.LABELS,
    }, section="kpi")


def _value(v: values.KpiValue | None) -> float | None:
    return v.value if v is not None else None


async def solutions_page(request: Request) -> Response:
    web = web_of(request.app)
    p = request.query_params
    found = await solutions.search(request.app, q=p.get("q", ""), kpi=p.get("kpi", ""),
                                   category=p.get("category", ""))
    return web.render(request, "kpi/solutions.html", {"found": found, "q": p.get("q", ""), "kpi": p.get("kpi", ""),
                                                      "find": find_builtin}, section="kpi")


async def solution_page(request: Request) -> Response:
    web = web_of(request.app)
    tenant = request.query_params.get("tenant", "")
    s = await solutions.get(request.app, tenant, request.path_params["sid"])
    results = await solutions.before_after(request.app, s)
    return web.render(request, "kpi/solution.html", {"s": s, "results": results, "fmt": charts.fmt,
                                                     "quality_labels": quality.LABELS, "find": find_builtin},
                      section="kpi")


async def compute_now(request: Request) -> Response:
    """The page's "compute now" button: every city's current period, then back to the comparison.
    Same permission as ``POST /kpi/v1/compute`` for each city (with security on, a browser form
    carries no bearer token, so it is refused like any unauthenticated write)."""
    tenants = await request.app.state.store.tenants()
    for tnt in tenants:
        may_write(tnt)
    for tnt in tenants:
        await engine.compute(request.app, tnt)
    return RedirectResponse("/kpi", status_code=303)


def install(app: Any) -> None:
    web = web_of(app)
    web.add_templates(HERE / "templates")
    web.add_catalogues(HERE / "locales")
    routes = app.router.routes
    if any(getattr(r, "path", None) == "/kpi" for r in routes):
        return
    for path, fn in (("/kpi/solutions/{sid:str}", solution_page), ("/kpi/solutions", solutions_page),
                     ("/kpi/indicator", indicator_page), ("/kpi", comparison_page)):
        routes.insert(0, Route(path, fn, methods=["GET"]))
    routes.insert(0, Route("/kpi/compute", compute_now, methods=["POST"]))
