"""``/kpi/v1`` — the KPI catalogue, computation, values, comparison, export/import and solutions as JSON.

Thin on purpose: every handler parses the request, calls one function of the kpi package
(which goes through the service layer), and renders JSON. The tenant (city) is the
``NGSILD-Tenant`` header, as everywhere in the platform; the cross-city endpoints
(``compare``, ``export``, ``solutions`` search) take ``tenants=a,b`` instead (default:
every tenant). Errors are raised as ``NgsiError`` and rendered as ProblemDetails by the app.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.algorithms.register import register_of
from urbanmim.errors import BadRequestData, Forbidden, InvalidRequest, ResourceNotFound
from urbanmim.kpi import catalogue, compare, engine, exchange, local, quality, solutions, values
from urbanmim.kpi.formulas import FORMULAS
from urbanmim.ngsild import http
from urbanmim.security.principal import current_principal

PREFIX = "/kpi/v1"
MAX_BODY = 16 * 1_048_576


def _json(body: Any, status: int = 200) -> Response:
    return Response(http.dumps(body), status_code=status, media_type=http.JSON)


def _list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]


async def _tenant(request: Request) -> str:
    return await http.require_tenant(request, request.app.state.store)


def may_write(tenant: str) -> None:
    """Computing, entering, verifying and importing KPIs is for the city's editors and admins (with
    security off every request is the platform itself). The computation then reads as the platform."""
    p = current_principal()
    if not p.has_role(tenant, "admin", "editor"):
        raise Forbidden(f"{p.subject} may not change KPIs of tenant {tenant or '(default)'} "
                        "(needs the editor or admin role)")


async def _body(request: Request) -> Any:
    body, _ = await http.read_json(request, MAX_BODY)
    return body


# ---- catalogue -------------------------------------------------------------------------------------------
async def list_catalogue(request: Request) -> Response:
    tenant = http.tenant_of(request) if request.headers.get(http.TENANT_HEADER) else None
    defs = await local.definitions(request.app, tenant)
    p = request.query_params
    for key, attr in (("type", "type"), ("dimension", "dimension"), ("category", "category_code")):
        if p.get(key):
            defs = [d for d in defs if getattr(d, attr) == p[key]]
    computable = {catalogue.slug(c): f for c, f in FORMULAS.items()}
    out = []
    for d in defs:
        j = d.to_json()
        f = computable.get(d.slug)
        j["formula"] = {"id": f.id, "version": f.version, "text": f.formula} if f else None
        out.append(j)
    return _json(out)


async def get_definition(request: Request) -> Response:
    tenant = http.tenant_of(request) if request.headers.get(http.TENANT_HEADER) else None
    d = await local.find(request.app, tenant, request.path_params["code"])
    j = d.to_json()
    f = FORMULAS.get(d.code)
    j["formula"] = {"id": f.id, "version": f.version, "text": f.formula} if f else None
    return _json(j)


async def define_local(request: Request) -> Response:
    tenant = http.tenant_of(request)
    may_write(tenant)
    d = catalogue.definition_from_json(await _body(request), source=tenant or "(default)")
    await local.define(request.app, tenant, d)
    return _json(d.to_json(), 201)


async def delete_local(request: Request) -> Response:
    tenant = await _tenant(request)
    may_write(tenant)
    await local.remove(request.app, tenant, request.path_params["code"])
    return Response(status_code=204)


async def list_formulas(request: Request) -> Response:
    reg = register_of(request.app)
    out = []
    for f in FORMULAS.values():
        d = catalogue.find_builtin(f.code)
        out.append({"code": f.code, "name": d.name if d else f.code, "id": f.id, "version": f.version,
                    "formula": f.formula, "inputs": list(f.inputs), "registered": reg.get(f.id, f.version) is not None})
    return _json(out)


async def quality_scale(request: Request) -> Response:
    return _json([{"level": c, "label": label, "meaning": m} for c, label, m in quality.LEVELS])


# ---- computation and values ------------------------------------------------------------------------------
async def compute(request: Request) -> Response:
    tenant = await _tenant(request)
    may_write(tenant)
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        body, _ = await http.read_json(request, MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestData("the body is a JSON object: {\"period\": \"2026\", \"kpis\": [codes]} (both optional)")
    kpis = body.get("kpis")
    if kpis is not None and (not isinstance(kpis, list) or not all(isinstance(k, str) for k in kpis)):
        raise BadRequestData("kpis must be a list of KPI codes")
    period = body.get("period")
    if period is not None and not isinstance(period, str):
        raise BadRequestData("period must be a string such as \"2026\"")
    report = await engine.compute(request.app, tenant, period=period, codes=kpis)
    return _json(report.to_json())


async def list_values(request: Request) -> Response:
    tenant = await _tenant(request)
    p = request.query_params
    code = None
    if p.get("kpi"):
        code = (await local.find(request.app, tenant, p["kpi"])).code
    vals = await values.load(request.app, tenant, code=code, period=p.get("period") or None)
    if p.get("dataQuality"):
        vals = [v for v in vals if v.quality == p["dataQuality"]]
    return _json([v.to_json() for v in vals])


async def get_value(request: Request) -> Response:
    tenant = await _tenant(request)
    v = await values.get(request.app, tenant, request.path_params["vid"])
    if v is None:
        raise ResourceNotFound(f"no KPI value {request.path_params['vid']}")
    return _json(v.to_json())


async def enter_value(request: Request) -> Response:
    tenant = http.tenant_of(request)
    may_write(tenant)
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("kpi"), str):
        raise BadRequestData("a manual value names its KPI: {\"kpi\": code, \"period\": ..., \"value\": ..., "
                             "\"dataQuality\": ..., \"evidence\": ...}")
    d = await local.find(request.app, tenant, body["kpi"])
    v = await engine.enter_manual(request.app, tenant, d, body)
    return _json(v.to_json(), 201)


async def verify_value(request: Request) -> Response:
    tenant = await _tenant(request)
    may_write(tenant)
    v = await values.get(request.app, tenant, request.path_params["vid"])
    if v is None:
        raise ResourceNotFound(f"no KPI value {request.path_params['vid']}")
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("verified", True), bool):
        raise BadRequestData("body: {\"verified\": true|false, \"by\": \"who checked it\"}")
    verified = body.get("verified", True)
    by = body.get("by")
    if verified and (not isinstance(by, str) or not by.strip()):
        raise BadRequestData("by (who verified the value) is required")
    v = await engine.set_verified(request.app, tenant, v, verified, (by or "").strip())
    return _json(v.to_json())


# ---- across cities ---------------------------------------------------------------------------------------
async def _tenants(request: Request) -> list[str] | None:
    names = _list(request.query_params.get("tenants"))
    if names is None:
        return None
    store = request.app.state.store
    for t in names:
        if not await store.tenant_exists(t):
            from urbanmim.errors import NonexistentTenant
            raise NonexistentTenant(f"tenant {t} does not exist")
    return names


async def compare_cities(request: Request) -> Response:
    p = request.query_params
    rows = await compare.comparison(request.app, tenants=await _tenants(request), period=p.get("period") or None,
                                    codes=_list(p.get("kpi")), normalise=p.get("normalise", "none"),
                                    dimension=p.get("dimension") or None)
    return _json([r.to_json() for r in rows])


async def trends(request: Request) -> Response:
    p = request.query_params
    if not p.get("kpi"):
        raise BadRequestData("kpi is required (a KPI code)")
    names = await _tenants(request) or await request.app.state.store.tenants()
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for t in names:
        d = await local.find(request.app, t, p["kpi"])
        by_comp: dict[str, list[values.KpiValue]] = {}
        for v in await values.load(request.app, t, code=d.code):
            by_comp.setdefault(v.component, []).append(v)
        if by_comp:
            out[t] = {c: compare.trend(vs) for c, vs in sorted(by_comp.items())}
    return _json(out)


async def export(request: Request) -> Response:
    p = request.query_params
    fmt = p.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidRequest("format must be json or csv")
    names = await _tenants(request) or await request.app.state.store.tenants()
    vals = [v for t in names for v in await values.load(request.app, t, period=p.get("period") or None)]
    if fmt == "csv":
        return Response(exchange.to_csv(vals), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="kpi-values.csv"'})
    return Response(exchange.to_json(vals), media_type=http.JSON,
                    headers={"Content-Disposition": 'attachment; filename="kpi-values.json"'})


async def import_(request: Request) -> Response:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await http.read_body(request, MAX_BODY)
    if not raw:
        raise InvalidRequest("the request body is empty")
    if ctype == "text/csv":
        try:
            vals = exchange.from_csv(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise BadRequestData("the CSV is not UTF-8") from None
    elif ctype in (http.JSON, http.JSONLD):
        vals = exchange.from_json(raw)
    else:
        from urbanmim.errors import UnsupportedMediaType
        raise UnsupportedMediaType("import takes application/json or text/csv")
    force = request.headers.get(http.TENANT_HEADER)
    for t in {http.tenant_of(request)} if force else {v.tenant for v in vals}:
        may_write(t)
    counts = await exchange.import_values(request.app, vals, tenant=http.tenant_of(request) if force else None)
    return _json({"imported": counts})


# ---- solutions -------------------------------------------------------------------------------------------
async def list_solutions(request: Request) -> Response:
    p = request.query_params
    if request.headers.get(http.TENANT_HEADER) and not p.get("tenants"):
        names: list[str] | None = [await _tenant(request)]
    else:
        names = await _tenants(request)
    found = await solutions.search(request.app, q=p.get("q", ""), kpi=p.get("kpi", ""),
                                   category=p.get("category", ""), outcome=p.get("outcome", ""), tenants=names)
    return _json([s.to_json() for s in found])


async def record_solution(request: Request) -> Response:
    tenant = http.tenant_of(request)
    may_write(tenant)
    s = solutions.from_body(tenant, await _body(request))
    for code in s.kpis:
        await local.find(request.app, tenant, code)     # 404 for an unknown KPI
    await solutions.save(request.app, s)
    return _json(s.to_json(), 201)


async def get_solution(request: Request) -> Response:
    tenant = await _tenant(request)
    s = await solutions.get(request.app, tenant, request.path_params["sid"])
    body = s.to_json()
    body["results"] = await solutions.before_after(request.app, s)
    return _json(body)


routes = [
    Route("/catalogue", list_catalogue, methods=["GET"]),
    Route("/catalogue/{code:str}", get_definition, methods=["GET"]),
    Route("/definitions", define_local, methods=["POST"]),
    Route("/definitions/{code:str}", delete_local, methods=["DELETE"]),
    Route("/formulas", list_formulas, methods=["GET"]),
    Route("/quality-levels", quality_scale, methods=["GET"]),
    Route("/compute", compute, methods=["POST"]),
    Route("/values", list_values, methods=["GET"]),
    Route("/values", enter_value, methods=["POST"]),
    Route("/values/{vid:str}", get_value, methods=["GET"]),
    Route("/values/{vid:str}/verify", verify_value, methods=["POST"]),
    Route("/compare", compare_cities, methods=["GET"]),
    Route("/trends", trends, methods=["GET"]),
    Route("/export", export, methods=["GET"]),
    Route("/import", import_, methods=["POST"]),
    Route("/solutions", list_solutions, methods=["GET"]),
    Route("/solutions", record_solution, methods=["POST"]),
    Route("/solutions/{sid:str}", get_solution, methods=["GET"]),
]
