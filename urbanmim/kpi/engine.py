"""Computing KPIs for a city and period, and entering the ones the platform cannot compute.

One computation = one tenant, one period per frequency: every registered formula (or the
ones asked for) runs over one :class:`CityData` (so shared inputs are read once), its
outcomes become :class:`KpiValue` s with full provenance, and all of them are written in
one batch through the service layer. Two rules protect human judgement:

* a value that is **manual** or **verified** is never overwritten by a computation (it is
  reported as kept); to recompute, un-verify it first;
* a formula without data writes **nothing** (reported as skipped with its reason): an
  absent value is honest, a zero is not.

A formula that fails unexpectedly is logged and reported as an error for that KPI; the
others still run and are saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.kpi import compare, quality, values
from urbanmim.kpi.catalogue import KpiDefinition, find_builtin, slug
from urbanmim.kpi.citydata import CityData
from urbanmim.kpi.formulas import FORMULAS, Formula, NoData
from urbanmim.kpi.periods import Period, parse_period, period_of, today
from urbanmim.kpi.values import KpiValue
from urbanmim.security.principal import SYSTEM, use_principal
from urbanmim.service.entities import now_iso

log = logging.getLogger("urbanmim.kpi")


@dataclass
class ComputeReport:
    tenant: str
    periods: list[str]
    computed: list[KpiValue] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (code, reason): no data
    kept: list[tuple[str, str]] = field(default_factory=list)        # (value id, why it was not overwritten)
    errors: list[tuple[str, str]] = field(default_factory=list)      # (code, message)
    seconds: float = 0.0
    reads: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "periods": self.periods, "seconds": round(self.seconds, 3),
                "computed": [v.to_json() for v in self.computed],
                "skipped": [{"code": c, "reason": r} for c, r in self.skipped],
                "kept": [{"id": i, "reason": r} for i, r in self.kept],
                "errors": [{"code": c, "error": e} for c, e in self.errors]}


def formulas_for(codes: list[str] | None) -> list[Formula]:
    if not codes:
        return list(FORMULAS.values())
    by_slug = {slug(c): f for c, f in FORMULAS.items()}
    out = []
    for c in codes:
        f = by_slug.get(slug(c))
        if f is None:
            raise BadRequestData(f"no formula for KPI {c!r}: computable KPIs are {', '.join(FORMULAS)}")
        out.append(f)
    return out


def period_for(d: KpiDefinition | None, label: str | None) -> Period:
    if label:
        return parse_period(label)
    return period_of(today(), d.frequency if d else "yearly")


async def compute(app: Any, tenant: str, *, period: str | None = None, codes: list[str] | None = None,
                  progress: Callable[[int], None] | None = None, now_ms: int | None = None,
                  organization: str | None = None) -> ComputeReport:
    """Run the formulas for one tenant and write their values (see the module docstring).

    Runs as the platform itself (``SYSTEM``): a KPI describes the whole city, so it must not
    depend on what the caller who triggered it may see; who may trigger it is the API's check."""
    with use_principal(SYSTEM):
        return await _compute(app, tenant, period=period, codes=codes, progress=progress, now_ms=now_ms,
                              organization=organization)


async def _compute(app: Any, tenant: str, *, period: str | None, codes: list[str] | None,
                   progress: Callable[[int], None] | None, now_ms: int | None,
                   organization: str | None) -> ComputeReport:
    t0 = time.perf_counter()
    chosen = formulas_for(codes)
    plan = [(f, find_builtin(f.code), period_for(find_builtin(f.code), period)) for f in chosen]
    report = ComputeReport(tenant, sorted({p.label for _, _, p in plan}))
    existing = {v.entity_id: v for v in await values.load(app, tenant)}
    data: dict[str, CityData] = {}
    stamp = now_iso()
    to_save: list[tuple[KpiValue, str | None, float | None]] = []
    for f, d, per in plan:
        cd = data.get(per.label)
        if cd is None:
            cd = data[per.label] = CityData(app, tenant, per, now_ms)
        try:
            outcomes = await f.compute(cd)
        except NoData as e:
            report.skipped.append((f.code, str(e)))
            outcomes = []
        except Exception as e:   # one broken formula must not stop the others
            log.exception("KPI %s for %s %s failed", f.code, tenant, per.label)
            report.errors.append((f.code, f"{type(e).__name__}: {e}"))
            outcomes = []
        city = await cd.denominators() if outcomes else {}
        stale = not f.history and per.end_ms <= cd.now_ms
        for o in outcomes:
            if stale:
                o.notes.append("computed from the entities as they are now (this formula reads no history), "
                               f"not as they were in {per.label}")
            v = KpiValue(tenant=tenant, code=f.code, period=per.label, value=o.value, unit=o.unit, quality=o.quality,
                         component=o.component, method="automatic", formula_id=f.id, formula_version=f.version,
                         formula=f.formula, inputs=o.inputs, notes=o.notes, details=o.details,
                         denominators={**city, **o.denominators}, computed_at=stamp,
                         next_calculation=_next(per), organization=organization or tenant)
            if d is not None:
                values.apply_definition(v, d)
                v.target = o.target if o.component else d.target
            quality.check(v.quality)
            old = existing.get(v.entity_id)
            if old is not None and (old.verified or old.method == "manual"):
                report.kept.append((v.entity_id, "verified" if old.verified else "manual value"))
                continue
            ach = compare.achievement(v.value, v.target, d.direction if d else "higher")
            to_save.append((v, compare.standing(ach), ach))
            report.computed.append(v)
        if progress is not None:
            progress(1)
    await values.save(app, tenant, to_save)
    report.reads = sum(cd.reads for cd in data.values())
    report.seconds = time.perf_counter() - t0
    return report


def _next(per: Period) -> str:
    """When the final value of a period is due (SDM ``dateNextCalculation``, a date): the day it closes."""
    return per.end.isoformat()


async def enter_manual(app: Any, tenant: str, d: KpiDefinition, body: dict[str, Any], *, user: str = "") -> KpiValue:
    """A value the platform cannot compute, with its evidence (a URL or a document reference)."""
    if not isinstance(body, dict):
        raise BadRequestData("a manual KPI value is a JSON object")
    per = parse_period(str(body.get("period") or ""))
    raw = body.get("value")
    if raw is None:
        raise BadRequestData("value must be a number")
    value = values.number(raw, "value")
    q = quality.check(body.get("dataQuality", "reported"))
    evidence = body.get("evidence")
    if q != "not-traceable" and (not isinstance(evidence, str) or not evidence.strip()):
        raise BadRequestData("evidence (a URL or a document reference) is required unless dataQuality is "
                             "not-traceable")
    component = body.get("component") or ""
    if not isinstance(component, str):
        raise BadRequestData("component must be a string")
    target = values.number(body.get("target", d.target), "target")
    denominators = values.numbers(body.get("denominators"), "denominators")
    v = KpiValue(tenant=tenant, code=d.code, period=per.label, value=value, unit=str(body.get("unit") or d.unit),
                 quality=q, component=component, method="manual", evidence=(evidence or "").strip(),
                 notes=[str(body["note"])] if body.get("note") else [], computed_at=now_iso(),
                 verified_by="", organization=str(body.get("organization") or tenant),
                 formula=str(body.get("formula") or d.method), target=target,
                 denominators=denominators)
    values.apply_definition(v, d)
    ach = compare.achievement(v.value, v.target, d.direction)
    await values.save(app, tenant, [(v, compare.standing(ach), ach)])
    return v


async def set_verified(app: Any, tenant: str, v: KpiValue, verified: bool, by: str) -> KpiValue:
    v.verified, v.verified_by = verified, by if verified else ""
    d = find_builtin(v.code)
    ach = compare.achievement(v.value, v.target, d.direction if d else "higher")
    await values.save(app, tenant, [(v, compare.standing(ach), ach)])
    return v
