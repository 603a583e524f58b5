"""CSV and JSON export of KPI values — and import back, so an export is also a backup and a hand-over.

Why round-tripping matters: cities send each other (and the partnership) spreadsheets; a
file that comes back must restore the same values *with* their provenance, or the
provenance is lost the first time anyone edits a number. So every field of a value is in
both formats (nested ones as JSON text in the CSV), and ``import(export(x)) == x`` is a test.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from urbanmim.errors import BadRequestData
from urbanmim.kpi import compare, values
from urbanmim.kpi.catalogue import find_builtin
from urbanmim.kpi.values import KpiValue
from urbanmim.service.entities import now_iso

FORMAT = "urbanmim-kpi-values"
VERSION = 1
# CSV columns: (header, KpiValue field, kind)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("tenant", "tenant", "str"), ("code", "code", "str"), ("component", "component", "str"),
    ("period", "period", "str"), ("value", "value", "float"), ("unit", "unit", "str"),
    ("dataQuality", "quality", "str"), ("verified", "verified", "bool"), ("verifiedBy", "verified_by", "str"),
    ("method", "method", "str"), ("name", "name", "str"), ("dimension", "dimension", "str"),
    ("subDimension", "sub_dimension", "str"), ("kpiType", "kpi_type", "str"), ("frequency", "frequency", "str"),
    ("formulaId", "formula_id", "str"), ("formulaVersion", "formula_version", "str"), ("formula", "formula", "str"),
    ("target", "target", "float"), ("computedAt", "computed_at", "str"), ("nextCalculation", "next_calculation", "str"),
    ("evidence", "evidence", "str"), ("organization", "organization", "str"), ("inputs", "inputs", "json"),
    ("notes", "notes", "json"), ("denominators", "denominators", "json"), ("details", "details", "json"),
)


def to_json(vals: Iterable[KpiValue]) -> bytes:
    body = {"format": FORMAT, "version": VERSION, "exportedAt": now_iso(),
            "values": [v.to_json() for v in vals]}
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


def to_csv(vals: Iterable[KpiValue]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for h, _, _ in COLUMNS])
    for v in vals:
        row = []
        for _, attr, kind in COLUMNS:
            x = getattr(v, attr)
            if kind == "json":
                row.append(orjson.dumps([i.to_json() for i in x] if attr == "inputs" else x).decode())
            elif kind == "bool":
                row.append("true" if x else "false")
            elif kind == "float":
                row.append("" if x is None else repr(float(x)))
            else:
                row.append(x or "")
        w.writerow(row)
    return buf.getvalue()


def from_json(raw: bytes | str) -> list[KpiValue]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestData(f"not JSON: {e}") from None
    items = body.get("values") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise BadRequestData(f"expected a {FORMAT} document (an object with 'values') or a list of values")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequestData(f"values[{i}] is not an object")
        try:
            out.append(KpiValue.from_json(item))
        except BadRequestData as e:
            raise BadRequestData(f"values[{i}]: {e.detail}") from None
    return out


def from_csv(text: str) -> list[KpiValue]:
    try:
        return _from_csv(text)
    except csv.Error as e:          # e.g. a field over the csv module's limit, a NUL byte
        raise BadRequestData(f"not a readable CSV: {e}") from None


def _from_csv(text: str) -> list[KpiValue]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"tenant", "code", "period", "value", "dataQuality"} - set(reader.fieldnames or ())
    if missing:
        raise BadRequestData(f"CSV lacks the column(s) {', '.join(sorted(missing))}")
    out = []
    for n, row in enumerate(reader, start=2):
        d: dict[str, Any] = {}
        try:
            for header, attr, kind in COLUMNS:
                cell = row.get(header)
                if cell is None:
                    continue
                if kind == "json":
                    d[attr] = orjson.loads(cell) if cell else ([] if attr in ("inputs", "notes") else {})
                elif kind == "bool":
                    d[attr] = cell.strip().lower() in ("true", "1", "yes")
                elif kind == "float":
                    d[attr] = float(cell) if cell.strip() else None
                else:
                    d[attr] = cell
            out.append(KpiValue.from_json(d))
        except (ValueError, orjson.JSONDecodeError) as e:
            raise BadRequestData(f"CSV line {n}: {e}") from None
        except BadRequestData as e:
            raise BadRequestData(f"CSV line {n}: {e.detail}") from None
    return out


async def import_values(app: Any, vals: list[KpiValue], *, tenant: str | None = None) -> dict[str, int]:
    """Write imported values through the service layer, per tenant (``tenant`` forces one)."""
    by_tenant: dict[str, list[tuple[KpiValue, str | None, float | None]]] = {}
    for v in vals:
        if tenant is not None:
            v.tenant = tenant
        d = find_builtin(v.code)
        ach = compare.achievement(v.value, v.target, d.direction if d else "higher")
        by_tenant.setdefault(v.tenant, []).append((v, compare.standing(ach), ach))
    for t, items in by_tenant.items():
        await values.save(app, t, items)
    return {t: len(items) for t, items in sorted(by_tenant.items())}
