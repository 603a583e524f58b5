"""The KPI catalogue: what each indicator means, before any number is computed.

Why a shipped file and not a table a city fills in: the point of U4SSC (ITU-T Y.4903) is
that "Air pollution" means the same thing in every city that reports it. So the 91
U4SSC indicators (plus a few the platform defines itself, type ``platform``) come in
``catalogue.csv`` next to this module — code, name, dimension, sub-dimension, category,
core/advanced, unit, which direction is better, a default target and the method in the
project's own words. A city adds *local* KPIs the same way through the API; those are
kept as ``KpiDefinition`` entities in its own tenant (see :mod:`urbanmim.kpi.local`), so
they are as durable and queryable as any other data.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from urbanmim.errors import BadRequestData

CATALOGUE_FILE = Path(__file__).with_name("catalogue.csv")
TYPES = ("core", "advanced", "platform", "local")
DIRECTIONS = ("higher", "lower")
FREQUENCIES = ("hourly", "daily", "weekly", "biweekly", "monthly", "bimonthly", "quarterly", "yearly")
DIMENSIONS = ("Economy", "Environment", "Society and Culture")


@dataclass(frozen=True)
class KpiDefinition:
    code: str                 # "EN: EN: AQ: 1C" (U4SSC), "UM: ..." (platform) or a city's own code
    name: str
    dimension: str
    sub_dimension: str
    category_code: str
    category: str
    type: str                 # core | advanced | platform | local
    unit: str                 # "percent", "per 100,000 inhabitants", "µg/m³", ...
    direction: str = "higher"  # which way is better
    target: float | None = None   # default target (a city may set its own)
    frequency: str = "yearly"     # calculationFrequency
    method: str = ""
    source: str = "U4SSC"         # U4SSC | urbanmim | the city

    @property
    def slug(self) -> str:
        return slug(self.code)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["subDimension"] = out.pop("sub_dimension")
        out["categoryCode"] = out.pop("category_code")
        out["slug"] = self.slug
        return out


def slug(code: str) -> str:
    """``EN: EN: AQ: 1C`` → ``EN-EN-AQ-1C``: usable in URLs and entity ids."""
    return re.sub(r"[^A-Za-z0-9]+", "-", code).strip("-")


@lru_cache(maxsize=1)
def builtin() -> tuple[KpiDefinition, ...]:
    """The shipped catalogue, in file order (U4SSC first, then the platform's own)."""
    out = []
    with CATALOGUE_FILE.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out.append(KpiDefinition(
                code=row["code"], name=row["name"], dimension=row["dimension"], sub_dimension=row["sub_dimension"],
                category_code=row["category_code"], category=row["category"], type=row["type"], unit=row["unit"],
                direction=row["direction"], target=float(row["target"]) if row["target"] else None,
                frequency=row["frequency"], method=row["method"],
                source="urbanmim" if row["type"] == "platform" else "U4SSC"))
    return tuple(out)


@lru_cache(maxsize=1)
def _by_slug() -> dict[str, KpiDefinition]:
    return {d.slug: d for d in builtin()}


def find_builtin(code_or_slug: str) -> KpiDefinition | None:
    return _by_slug().get(slug(code_or_slug))


def definition_from_json(body: Any, *, source: str) -> KpiDefinition:
    """A city's local KPI from an API body (same fields as the catalogue); every mistake is a 400."""
    if not isinstance(body, dict):
        raise BadRequestData("a KPI definition is a JSON object")
    def text(name: str, default: str | None = None) -> str:
        v = body.get(name, default)
        if not isinstance(v, str) or not v.strip():
            raise BadRequestData(f"KPI definition: {name} is required (a non-empty string)")
        return v.strip()
    code = text("code")
    if find_builtin(code) is not None:
        raise BadRequestData(f"{code!r} is a catalogue KPI; a local KPI needs its own code")
    if not slug(code):
        raise BadRequestData("KPI definition: code must contain letters or digits")
    direction = body.get("direction", "higher")
    if direction not in DIRECTIONS:
        raise BadRequestData(f"direction must be one of {DIRECTIONS}")
    frequency = body.get("frequency", "yearly")
    if frequency not in FREQUENCIES:
        raise BadRequestData(f"frequency must be one of {FREQUENCIES}")
    target = body.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)):
        raise BadRequestData("target must be a number")
    return KpiDefinition(
        code=code, name=text("name"), dimension=text("dimension"),
        sub_dimension=text("subDimension", body.get("sub_dimension", "Local")),
        category_code=text("categoryCode", body.get("category_code", "LOCAL")),
        category=text("category", "Local"), type="local", unit=text("unit"), direction=direction,
        target=float(target) if target is not None else None, frequency=frequency, method=text("method"),
        source=source)


def with_target(d: KpiDefinition, target: float | None) -> KpiDefinition:
    return replace(d, target=target)
