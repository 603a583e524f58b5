"""Temporal queries paged in the store, and hour buckets merged per period in SQL: same answers.

Both are shortcuts of the read path (``Store.temporal_entity_page`` instead of filtering every
temporal entity of the tenant; ``periods`` in ``Store.temporal_aggr_inputs`` so PostgreSQL adds
the hour buckets of a period up itself), so every test compares the shortcut with the way
around it, on both backends — and the last one compares the backends with each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from urbanmim.app import create_app
from urbanmim.ngsild import params as nparams
from urbanmim.ngsild.contexts import CORE
from urbanmim.settings import Settings
from urbanmim.store.base import EntityQuery, Store, TemporalSpan
from urbanmim.temporal import aggregate as agg
from urbanmim.temporal import service as tsvc
from urbanmim.temporal.timeutil import HOUR_MS, Duration, to_ms

D = "https://uri.etsi.org/ngsi-ld/default-context/"

# creation order differs from id order: pages follow creation order
KINDS = [("07", ["A"], "x"), ("03", ["B"], "y"), ("11", ["A", "B"], "xy"), ("01", ["A"], "y"), ("05", ["B"], "x"),
         ("02", ["A"], "xy"), ("09", ["C"], "x"), ("04", ["A", "B"], "x"), ("12", ["B"], "xy"), ("06", ["A"], "x"),
         ("10", ["A", "C"], "y"), ("08", ["B"], "x"), ("13", ["A"], "x")]


def _eid(n: str) -> str:
    return f"urn:ngsi-ld:Thing:{n}"


async def _load_kinds(client: httpx.AsyncClient) -> None:
    for n, types, attrs in KINDS:
        body: dict[str, Any] = {"id": _eid(n), "type": types if len(types) > 1 else types[0]}
        for a in attrs:
            body[a] = [{"type": "Property", "value": int(n) + k, "observedAt": f"2024-01-01T0{k}:00:00Z"}
                       for k in range(2)]
        r = await client.post("/temporal/entities", json=body)
        assert r.status_code == 201, r.text


def _expected(types: list[set[str]], attrs: set[str] | None, ids: set[str] | None) -> list[str]:
    """The matching entities in creation order, from the test's own table."""
    return [_eid(n) for n, ts, ats in KINDS
            if any(g <= set(ts) for g in types) and (attrs is None or set(ats) & attrs)
            and (ids is None or _eid(n) in ids)]


PAGE_QUERIES: list[tuple[dict[str, str], list[set[str]], set[str] | None, set[str] | None]] = [
    ({"type": "A"}, [{"A"}], None, None),
    ({"type": "B"}, [{"B"}], None, None),
    ({"type": "A,C"}, [{"A"}, {"C"}], None, None),
    ({"type": "A;B"}, [{"A", "B"}], None, None),
    ({"type": "(A;B)|C"}, [{"A", "B"}, {"C"}], None, None),
    ({"type": "A", "attrs": "y"}, [{"A"}], {"y"}, None),
    ({"type": "B", "attrs": "x,y"}, [{"B"}], {"x", "y"}, None),
    ({"type": "A,B", "id": f"{_eid('01')},{_eid('03')},{_eid('13')},{_eid('09')}"}, [{"A"}, {"B"}], None,
     {_eid("01"), _eid("03"), _eid("13"), _eid("09")}),
    ({"type": "Nothing"}, [{"Nothing"}], None, None),
]


@pytest.mark.parametrize(("query", "types", "attrs", "ids"), PAGE_QUERIES)
async def test_store_page_equals_filtering_every_entity(app, client: httpx.AsyncClient, query: dict[str, str],  # type: ignore[no-untyped-def]
                                                        types: list[set[str]], attrs: set[str] | None,
                                                        ids: set[str] | None) -> None:
    """Pages and counts from ``Store.temporal_entity_page`` are the ones filtering every temporal
    entity gives (``idPattern=.*`` keeps the query on that path), and the test's own expectation."""
    await _load_kinds(client)
    want = _expected(types, attrs, ids)
    for offset, limit in ((0, 20), (0, 1), (2, 3), (4, 100), (len(want), 5), (50, 2)):
        for count in ("true", "false"):
            p = {**query, "options": "temporalValues", "offset": str(offset), "limit": str(limit), "count": count}
            fast = await client.get("/temporal/entities", params=p)
            slow = await client.get("/temporal/entities", params={**p, "idPattern": ".*"})
            assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
            assert fast.json() == slow.json(), (p, fast.json(), slow.json())
            assert [e["id"] for e in fast.json()] == want[offset:offset + limit], p
            if count == "true":
                assert fast.headers["NGSILD-Results-Count"] == slow.headers["NGSILD-Results-Count"] == str(len(want))
            else:
                assert "NGSILD-Results-Count" not in fast.headers
    # the backend's own page against the Store default (which filters temporal_entities)
    store = app.state.store
    groups = [frozenset(D + t for t in g) for g in types]
    for offset, limit, counted in ((0, 20, True), (1, 2, True), (3, 0, True), (0, 5, False), (40, 5, True)):
        q = EntityQuery(tenant="", ids=sorted(ids) if ids else None, types=groups,
                        attrs={D + a for a in attrs} if attrs else None, offset=offset, limit=limit, count=counted)
        got = await store.temporal_entity_page("", q)
        assert got == await Store.temporal_entity_page(store, "", q), (q, got)


async def test_post_query_with_one_selector_pages_in_the_store(client: httpx.AsyncClient) -> None:
    await _load_kinds(client)
    body = {"type": "Query", "entities": [{"type": "A"}], "attrs": ["x"]}
    r = await client.post("/temporal/entityOperations/query", params={"limit": "2", "offset": "1", "count": "true"},
                          json=body)
    assert r.status_code == 200, r.text
    want = _expected([{"A"}], {"x"}, None)
    assert [e["id"] for e in r.json()] == want[1:3]
    assert r.headers["NGSILD-Results-Count"] == str(len(want))


# ---- hour buckets merged per period ----------------------------------------------------------
# values whose sums depend on the order they are added in, the ±1e150 cut-off (kept in the history,
# left out of aggregation beyond it), non-numeric values, datasets, and days without any instance
TRICKY = [0.1, 1e16, 0.3, -1e16, 1e150, -1e150, 1.0000001e150, -3e200, 2.5e-7, 7, 0.2, -0.0, 1e15 + 0.5, 0.0,
          -0.0, 0.0, 0.0, -0.0]


def _history(signed_zeros: bool = True) -> dict[str, Any]:
    """Instances of ``v`` (two datasets), ``s`` (some strings), ``zp``/``zn`` (zeros of both signs as
    minimum/maximum of periods: equal minima keep the earliest hour's). SQLite keeps no -0.0 (an
    integral REAL is stored as an integer), so the comparison of backends goes without them."""
    t0 = to_ms("2024-01-30T00:00:00Z")
    zero = -0.0 if signed_zeros else 0.0
    vals: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    k = 0
    for h in range(0, 24 * 36, 5):                 # every 5 hours for 36 days, a gap of 4 days in February
        if 6 * 24 <= h < 10 * 24:
            continue
        for m in (0, 17, 43):
            ts = t0 + h * HOUR_MS + m * 60_000
            stamp = f"{_iso(ts)}"
            x = TRICKY[k % len(TRICKY)] * (1 + h % 3)
            vals.append({"type": "Property", "value": x if x or signed_zeros else 0.0, "observedAt": stamp})
            if m == 17:
                y = TRICKY[(k * 5) % len(TRICKY)]
                other.append({"type": "Property", "value": y if y or signed_zeros else 0.0, "datasetId": "urn:ds:2",
                              "observedAt": stamp})
            k += 1
    vals.append({"type": "Property", "value": 4.25, "observedAt": "2024-03-05T23:59:59.500Z"})  # a raw tail
    zp: list[dict[str, Any]] = [{"type": "Property", "value": (0.0, zero, 1.0, zero, 0.0)[h % 5 if h % 7 else 1],
           "observedAt": _iso(t0 + h * HOUR_MS + 60_000)} for h in range(0, 24 * 36, 1)]
    zn = [dict(z, value=-z["value"] if z["value"] or signed_zeros else 0.0) for z in zp]
    return {"v": vals + other, "zp": zp, "zn": zn,
            "s": [{"type": "Property", "value": "text" if i % 2 else i, "observedAt": v["observedAt"]}
                  for i, v in enumerate(vals[:40])]}


def _iso(ms: int) -> str:
    from urbanmim.temporal.timeutil import iso
    return iso(ms)


SPANS = [("2024-01-30T00:00:00Z", "2024-03-06T00:00:00Z"), ("2024-01-31T06:00:00Z", "2024-03-05T23:59:59.900Z"),
         ("2024-02-02T00:00:00Z", "2024-02-12T00:00:00Z")]
DURATIONS = ["P1D", "PT6H", "P1M", "PT1H", "P1W", "P1M1D", None]


async def _load_history(client: httpx.AsyncClient, n: int = 3, signed_zeros: bool = True) -> list[str]:
    ids = []
    for i in range(n):
        eid = f"urn:ngsi-ld:Sensor:agg{i}"
        hist = _history(signed_zeros)
        body: dict[str, Any] = {"id": eid, "type": "Sensor", "v": hist["v"][i:]}
        if i == 1:
            body["s"] = hist["s"]
        if i == 2:
            body["zp"], body["zn"] = hist["zp"], hist["zn"]
        r = await client.post("/temporal/entities", json=body)
        assert r.status_code == 201, r.text
        ids.append(eid)
    return ids


async def test_merged_buckets_aggregate_like_hour_buckets(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    """For every method and period (P1D, PT6H, P1M ...), over period boundaries, empty periods and
    values at the ±1e150 cut-off: buckets merged per period by the store aggregate to exactly the
    numbers of hour buckets, and a page equals each attribute's own (hour-bucket) answer."""
    ids = await _load_history(client)
    store = app.state.store
    keys = [(eid, D + "v") for eid in ids] + [(ids[2], D + "zp"), (ids[2], D + "zn")]
    for start_text, end_text in SPANS:
        start, end = to_ms(start_text), to_ms(end_text)
        for dur_text in DURATIONS:
            dur = Duration(dur_text) if dur_text else Duration(f"PT{max(1, (end - start + 999) // 1000)}S")
            if not agg.can_use_buckets(["avg"], "observedAt", start, dur):
                continue
            bucket_end = end - end % HOUR_MS
            span = TemporalSpan("observedAt", start, end)
            grid = agg.period_grid(start, bucket_end, dur)
            merged = await store.temporal_aggr_inputs("", keys, span, bucket_end, grid)
            hourly = await store.temporal_aggr_inputs("", keys, span, bucket_end)
            assert set(merged) == set(hourly) == set(keys)
            for key in keys:
                a = agg.aggregate(merged[key].raw, merged[key].buckets, ["avg"], start, dur)
                b = agg.aggregate(hourly[key].raw, hourly[key].buckets, ["avg"], start, dur)
                assert list(a) == list(b), (key, dur_text)
                for ds in a:
                    assert [p for p, _ in a[ds]] == [p for p, _ in b[ds]]
                    for (_, x), (_, y) in zip(a[ds], b[ds], strict=True):
                        for m in agg.BUCKETABLE:
                            assert repr(x.result(m)) == repr(y.result(m)), (key, ds, dur_text, m)
            for methods in (",".join(agg.METHODS), "avg", "stddev,sumsq,min", "totalCount,distinctCount"):
                p = {"type": "Sensor", "options": "aggregatedValues", "aggrMethods": methods, "timerel": "between",
                     "timeAt": start_text, "endTimeAt": end_text, "limit": "10"}
                if dur_text:
                    p["aggrPeriodDuration"] = dur_text
                r = await client.get("/temporal/entities", params=p)
                assert r.status_code == 200, r.text
                page = r.json()
                assert [e["id"] for e in page] == ids
                tp = tsvc.parse_temporal(p)
                view = nparams.make_view({}, CORE)
                for body in page:
                    for attr in ("v", "s", "zp", "zn"):
                        if attr in body:
                            one = await tsvc.render_aggregated(store, "", body["id"], D + attr, view, tp)
                            assert body[attr] == one, (p, body["id"], attr)


@pytest.fixture
async def two_clients(tmp_path: Path, pg_db: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    apps = [create_app(Settings(db=db, sqlite_synchronous="NORMAL")) for db in (str(tmp_path / "t.db"), pg_db)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a),  # type: ignore[arg-type]
                                     base_url="http://t/ngsi-ld/v1")
                   for a in apps]
        async with clients[0], clients[1]:
            yield clients[0], clients[1]


@pytest.mark.postgres
async def test_sqlite_and_postgres_answer_the_same(two_clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """The same history in both backends: identical aggregated pages (PostgreSQL merges buckets in
    SQL, SQLite in Python) and identical store pages, byte for byte."""
    lite, pg = two_clients
    for c in two_clients:
        await _load_history(c, signed_zeros=False)
        await _load_kinds(c)
    for start_text, end_text in SPANS:
        for dur_text in DURATIONS:
            p = {"type": "Sensor", "options": "aggregatedValues", "aggrMethods": ",".join(agg.METHODS),
                 "timerel": "between", "timeAt": start_text, "endTimeAt": end_text, "limit": "2", "offset": "1",
                 "count": "true"}
            if dur_text:
                p["aggrPeriodDuration"] = dur_text
            a, b = await lite.get("/temporal/entities", params=p), await pg.get("/temporal/entities", params=p)
            assert a.status_code == b.status_code == 200, (a.text, b.text)
            i = next((i for i in range(min(len(a.content), len(b.content))) if a.content[i] != b.content[i]), 0)
            assert a.content == b.content, (p, a.content[i - 150:i + 60], b.content[i - 150:i + 60])
            assert a.headers["NGSILD-Results-Count"] == b.headers["NGSILD-Results-Count"] == "3"
    for query, *_ in PAGE_QUERIES:
        p = {**query, "offset": "1", "limit": "4", "count": "true"}
        a, b = await lite.get("/temporal/entities", params=p), await pg.get("/temporal/entities", params=p)
        assert a.content == b.content and a.headers["NGSILD-Results-Count"] == b.headers["NGSILD-Results-Count"]


@pytest.mark.parametrize("field,value", [("scope", "/a\u0000b"), ("scope", "/a\u0001b"), ("type", "Ve\u0000hicle")])
async def test_control_characters_are_refused_and_temporal_type_queries_keep_working(
        client: httpx.AsyncClient, field: str, value: str) -> None:
    """A NUL in a stored temporal entity document made PostgreSQL's jsonb cast (type filter of
    the store's page) fail for the whole tenant; such values are refused at input instead."""
    bad = {"id": "urn:ngsi-ld:Vehicle:nul", "type": "Vehicle", "speed": {"type": "Property", "value": 1}}
    bad[field] = value
    r = await client.post("/entities", json=bad)
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("BadRequestData")
    ok = {"id": "urn:ngsi-ld:Vehicle:ok", "type": "Vehicle", "speed": {"type": "Property", "value": 2}}
    assert (await client.post("/entities", json=ok)).status_code == 201
    r = await client.get("/temporal/entities", params={"type": "Vehicle"})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:ok"]
