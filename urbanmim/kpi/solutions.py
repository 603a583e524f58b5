"""The solutions catalogue: what a city implemented, what it aimed to move, what happened, how to repeat it.

The Monitoring & Measuring group wants to learn "what works, what does not and why". A
solution record is a city's own account (name, category, when, the KPIs it aimed to move,
the outcome, lessons learnt and a "white label" playbook a smaller city can follow); the
**before/after values are not typed in**: they are read from the city's KPI history at
read time, so they cannot disagree with the KPI values the platform reports.

Records are ``SmartSolution`` entities (project type, default vocabulary) in the city's
tenant, written through the service layer; search and comparison walk every tenant.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from urbanmim.errors import BadRequestData, ResourceNotFound
from urbanmim.kpi import values
from urbanmim.kpi.catalogue import find_builtin, slug
from urbanmim.kpi.citydata import DEFAULT_VOCAB
from urbanmim.kpi.values import KpiValue
from urbanmim.service.entities import EntityService, now_iso
from urbanmim.store.base import EntityQuery, Mutation

TYPE = DEFAULT_VOCAB + "SmartSolution"
ATTR = DEFAULT_VOCAB + "solution"
OUTCOMES = ("worked", "partly", "did-not-work", "too-early")


@dataclass
class Solution:
    tenant: str
    name: str
    category: str
    description: str
    implemented_from: str                  # ISO date
    kpis: list[str]                        # KPI codes it aimed to move
    outcome: str = "too-early"
    implemented_to: str = ""               # ISO date (empty: a single roll-out date)
    lessons_learnt: str = ""
    playbook: list[str] = field(default_factory=list)   # white-label steps, in order
    cost: str = ""
    contact: str = ""
    tags: list[str] = field(default_factory=list)
    recorded_at: str = ""

    @property
    def id(self) -> str:
        return f"urn:ngsi-ld:SmartSolution:{self.tenant or 'default'}:{slug(self.name)}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["id"] = self.id
        return out

    def text(self) -> str:
        return " ".join([self.name, self.category, self.description, self.lessons_learnt, *self.playbook, *self.tags,
                         *self.kpis]).lower()


def _date(v: Any, what: str, required: bool = True) -> str:
    if not v:
        if required:
            raise BadRequestData(f"{what} is required (YYYY-MM-DD)")
        return ""
    try:
        return date.fromisoformat(str(v)).isoformat()
    except ValueError:
        raise BadRequestData(f"{what} must be a date YYYY-MM-DD, not {v!r}") from None


def _str_list(v: Any, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise BadRequestData(f"{what} must be a list of non-empty strings")
    return [x.strip() for x in v]


def from_body(tenant: str, body: Any) -> Solution:
    """A solution from an API body (camelCase members); every mistake is a 400."""
    if not isinstance(body, dict):
        raise BadRequestData("a solution is a JSON object")

    def text(name: str, required: bool = True) -> str:
        v = body.get(name, "")
        if not isinstance(v, str) or (required and not v.strip()):
            raise BadRequestData(f"{name} is required (a non-empty string)" if required else f"{name} must be text")
        return v.strip()
    kpis = _str_list(body.get("kpis"), "kpis")
    if not kpis:
        raise BadRequestData("kpis: name at least one KPI code the solution aimed to move")
    outcome = body.get("outcome", "too-early")
    if outcome not in OUTCOMES:
        raise BadRequestData(f"outcome must be one of {', '.join(OUTCOMES)}")
    s = Solution(tenant=tenant, name=text("name"), category=text("category"), description=text("description"),
                 implemented_from=_date(body.get("implementedFrom"), "implementedFrom"),
                 implemented_to=_date(body.get("implementedTo"), "implementedTo", required=False),
                 kpis=kpis, outcome=outcome, lessons_learnt=text("lessonsLearnt", False),
                 playbook=_str_list(body.get("playbook"), "playbook"), cost=text("cost", False),
                 contact=text("contact", False), tags=_str_list(body.get("tags"), "tags"), recorded_at=now_iso())
    if s.implemented_to and s.implemented_to < s.implemented_from:
        raise BadRequestData("implementedTo is before implementedFrom")
    if not slug(s.name):
        raise BadRequestData("name must contain letters or digits")
    return s


_CAMEL = {"implemented_from": "implementedFrom", "implemented_to": "implementedTo", "lessons_learnt": "lessonsLearnt"}


def _from_entity(tenant: str, ent: dict[str, Any]) -> Solution | None:
    """The stored solution, read through the same checks as an API body: a SmartSolution entity is ordinary
    NGSI-LD data anyone may write, and one with a number for a name must not break every search (None)."""
    insts = ent["attrs"].get(ATTR) or []
    raw = insts[0].get("value") if insts else None
    if not isinstance(raw, dict) or not set(raw) <= {f for f in Solution.__dataclass_fields__}:
        return None
    try:
        s = from_body(tenant, {_CAMEL.get(k, k): v for k, v in raw.items()})
    except BadRequestData:
        return None
    recorded = raw.get("recorded_at")
    s.recorded_at = recorded if isinstance(recorded, str) else ""
    return s


async def save(app: Any, s: Solution) -> None:
    data = asdict(s)
    data.pop("tenant")
    ent = {"id": s.id, "type": [TYPE], "attrs": {ATTR: [{"type": "Property", "value": data}]}}
    (out,) = await app.state.entities.batch(s.tenant, [Mutation(s.id, EntityService.replace_fn(ent, must_exist=False))])
    if out.error is not None:
        raise out.error


async def of_tenant(app: Any, tenant: str) -> list[Solution]:
    res = await app.state.entities.query(EntityQuery(tenant=tenant, types=[frozenset({TYPE})], limit=100_000))
    return sorted((s for e in res.entities if (s := _from_entity(tenant, e)) is not None), key=lambda s: s.name)


async def get(app: Any, tenant: str, sid: str) -> Solution:
    try:
        ent = await app.state.entities.retrieve(tenant, sid)
    except ResourceNotFound:
        ent = None
    s = _from_entity(tenant, ent) if ent is not None and TYPE in ent.get("type", ()) else None
    if s is None:
        raise ResourceNotFound(f"no solution {sid} in tenant {tenant or '(default)'}")
    return s


async def search(app: Any, *, q: str = "", kpi: str = "", category: str = "", tenants: list[str] | None = None,
                 outcome: str = "") -> list[Solution]:
    """Solutions of every city (or the given ones) matching all the words of ``q`` and the filters."""
    words = [w for w in re.split(r"\s+", q.lower()) if w]
    out = []
    for t in tenants if tenants is not None else await app.state.store.tenants():
        for s in await of_tenant(app, t):
            hay = s.text()
            if words and not all(w in hay for w in words):
                continue
            if kpi and slug(kpi) not in {slug(k) for k in s.kpis}:
                continue
            if category and category.lower() != s.category.lower():
                continue
            if outcome and outcome != s.outcome:
                continue
            out.append(s)
    return sorted(out, key=lambda s: (s.name.lower(), s.tenant))


def _ends(v: KpiValue) -> date:
    return v.p.end


async def before_after(app: Any, s: Solution) -> list[dict[str, Any]]:
    """Per KPI (and component) aimed at: the last value of a period that ended by the roll-out, and the
    latest value of a period that started after it was complete, with the change and whether it is an
    improvement in the KPI's better direction."""
    start = date.fromisoformat(s.implemented_from)
    done = date.fromisoformat(s.implemented_to or s.implemented_from)
    out: list[dict[str, Any]] = []
    for code in s.kpis:
        d = find_builtin(code)
        direction = d.direction if d else "higher"
        by_comp: dict[str, list[KpiValue]] = {}
        for v in await values.load(app, s.tenant, code=d.code if d else code):
            by_comp.setdefault(v.component, []).append(v)
        if not by_comp:
            out.append({"kpi": code, "component": "", "before": None, "after": None, "change": None,
                        "improved": None, "note": "no values of this KPI in the city's history"})
            continue
        for comp, vs in sorted(by_comp.items()):
            before = [v for v in vs if v.p.end <= start and v.value is not None]
            after = [v for v in vs if v.p.start >= done and v.value is not None]
            b = max(before, key=lambda v: v.p.end) if before else None
            a = max(after, key=lambda v: v.p.start) if after else None
            change = (a.value - b.value) if a and b and a.value is not None and b.value is not None else None
            improved = None if change is None else (change > 0 if direction == "higher" else change < 0)
            row: dict[str, Any] = {
                "kpi": code, "component": comp, "name": d.name if d else code, "direction": direction,
                "before": _brief(b), "after": _brief(a), "change": None if change is None else round(change, 6),
                "improved": improved}
            out.append(row)
    return out


def _brief(v: KpiValue | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"period": v.period, "value": v.value, "unit": v.unit, "dataQuality": v.quality, "verified": v.verified,
            "id": v.entity_id}
