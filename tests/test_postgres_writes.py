"""The set-form write path of PostgreSQL (``urbanmim/store/postgres_writes.py``) writes exactly
what the per-mutation path writes.

* store level, PostgreSQL: the same mixed call (creates, updates, an id written three times, a
  re-sent observation — of a stored instance and of one sent earlier in the call —, an
  attribute deleted, an entity deleted, unchanged, invalid, and one PostgreSQL cannot store)
  through the set form and through the per-mutation path (``set_form = False``), on two
  schemas with the same real listeners (the temporal recorder, plus listeners that emit outbox
  and audit records): same outcomes, and the same rows in every table — entities and their
  index rows in row order, temporal entities, instances, hour buckets, outbox and audit rows
  in sequence order;
* API level, both backends: a mixed batch gives the same per-entity answers, and the same
  state and history as sending its entities one request at a time.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_URL
from tests.helpers import ERRORS, prop, vehicle
from urbanmim.errors import BadRequestData
from urbanmim.store.base import UNCHANGED, AuditRecord, Change, Mutation, OutboxRecord
from urbanmim.store.postgres import PostgresStore
from urbanmim.temporal.recorder import Recorder

T = "https://example.org/T"
A, B, G = "https://example.org/a", "https://example.org/b", "https://example.org/loc"
TENANT = "city"


def _inst(value: Any, observed: str | None = None, **extra: Any) -> dict[str, Any]:
    inst: dict[str, Any] = {"type": "Property", "value": value, **extra}
    if observed:
        inst["observedAt"] = observed
    return inst


def _e(n: int) -> str:
    return f"urn:ngsi-ld:T:{n}"


def _set(eid: str, at: str, attrs: dict[str, list[dict[str, Any]]]) -> Callable[[Any], Any]:
    """Replace the entity's attributes (creating it if needed)."""
    def fn(cur: Any) -> Any:
        ent = cur or {"id": eid, "type": [T], "createdAt": at, "attrs": {}}
        ent["modifiedAt"] = at
        ent["attrs"].update(copy.deepcopy(attrs))
        return ent, "ok"
    return fn


def _drop_attr(attr: str, at: str) -> Callable[[Any], Any]:
    def fn(cur: Any) -> Any:
        cur["attrs"].pop(attr)
        cur["modifiedAt"] = at
        return cur, "dropped"
    return fn


def _delete(cur: Any) -> Any:
    return None, "deleted"


def _unchanged(cur: Any) -> Any:
    return UNCHANGED, "same"


def _invalid(cur: Any) -> Any:
    raise BadRequestData("no")


def _outbox(change: Change) -> list[OutboxRecord]:
    # entity 13's row cannot be stored: a failure in the last statement of the batch, whose result
    # is never read (pipeline mode must still roll back the batch's SAVEPOINT, not the call)
    sub = "urn:sub:\x00" if change.entity_id == _e(13) else "urn:sub:1"
    return [OutboxRecord(sub, {"id": change.entity_id, "new": change.new is not None, "at": change.at})]


def _audit(change: Change) -> list[AuditRecord]:
    return [AuditRecord(change.at, change.tenant, "tester", "delete" if change.new is None else "update", "permit",
                        [change.entity_id], sorted((change.new or {}).get("attrs", {})))]


PT = "2024-05-01T10:15:00Z"
LOC = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.8, 43.46]}}


def _setup() -> list[Mutation]:
    return [Mutation(_e(n), _set(_e(n), "2024-05-01T09:00:00.000Z", {A: [_inst(n, PT)], G: [LOC]}))
            for n in (1, 2, 3, 4)]


def _mixed() -> list[Mutation]:
    at = "2024-05-01T10:30:00.000Z"
    at2 = "2024-05-01T10:31:00.000Z"
    return [
        Mutation(_e(10), _set(_e(10), at, {A: [_inst(1.5, PT)], B: [_inst("x")], G: [LOC]})),   # create
        Mutation(_e(1), _set(_e(1), at, {A: [_inst(2.5, "2024-05-01T10:20:00Z")]})),            # update
        Mutation(_e(11), _invalid),                                                               # invalid
        Mutation(_e(2), _set(_e(2), at, {A: [_inst(7, PT)]})),            # re-sent stored observation
        Mutation(_e(10), _set(_e(10), at2, {A: [_inst(4.5, PT)]})),       # repeat: re-sends its own one
        Mutation(_e(3), _delete),                                                                 # delete
        Mutation(_e(4), _unchanged),
        Mutation(_e(4), _drop_attr(G, at)),                                                       # drop attr
        Mutation(_e(12), _set(_e(12), at, {"https://example.org/bad\x00name": [_inst(1)]})),      # cannot store
        Mutation(_e(10), _set(_e(10), at2, {A: [_inst(5.5, "2024-05-01T10:45:00Z")],
                                            B: [_inst("y", datasetId="urn:ds:1")]})),           # third write
        Mutation(_e(13), _set(_e(13), at, {A: [_inst(-1, "2024-05-01T11:00:00Z")]})),            # create
        Mutation(_e(1), _set(_e(1), at2, {A: [_inst(3.5, "2024-05-01T10:20:00Z")]})),           # re-sent again
    ]


@pytest.fixture
async def stores() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not available at {PG_URL}: {e}")
    schemas = [f"t_{uuid.uuid4().hex[:16]}" for _ in range(2)]
    out = []
    for s in schemas:
        st = PostgresStore(f"{PG_URL}?schema={s}", pool_min=1, pool_max=2)
        await st.open()
        st.listeners += [Recorder(), _outbox, _audit]
        out.append(st)
    out[1].set_form = False
    try:
        yield out[0], out[1]
    finally:
        for st in out:
            await st.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


_DUMP = {
    "entities": "SELECT id, doc FROM entities ORDER BY rid",
    "etypes": "SELECT e.id, t.type FROM etypes t JOIN entities e USING (rid) ORDER BY 1, 2",
    "eattrs": "SELECT e.id, a.attr, a.kinds FROM eattrs a JOIN entities e USING (rid) ORDER BY 1, 2",
    "egeo": "SELECT e.id, g.attr, ST_AsText(g.g) FROM egeo g JOIN entities e USING (rid) ORDER BY 1, 2, 3",
    "tentities": "SELECT id, doc FROM tentities ORDER BY teid",
    "tinstances": "SELECT t.id, i.attr, i.ds, i.ts, i.created_at, i.modified_at, i.deleted_at, i.num, i.doc "
                  "FROM tinstances i JOIN tentities t USING (teid) ORDER BY i.iid",
    "tbuckets": "SELECT t.id, b.attr, b.ds, b.hour, b.cnt, b.ncnt, b.sum, b.sumsq, b.vmin, b.vmax "
                "FROM tbuckets b JOIN tentities t USING (teid) ORDER BY 1, 2, 3, 4",
    "outbox": "SELECT sub_id, payload FROM outbox ORDER BY seq",
    "audit": "SELECT ts, tenant, subject, action, decision, entities, doc FROM audit ORDER BY seq",
}


_NOW = re.compile(rb"20[2-9][5-9]-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_NOW_MS = 1735689600000      # 2025-01-01: the test's own times are in 2024


def _plain(v: Any) -> Any:
    """A column value with the times of "now" (a deletion is stamped with the write's clock) masked."""
    if isinstance(v, memoryview | bytes):
        return _NOW.sub(b"NOW", bytes(v))
    if isinstance(v, str):
        return _NOW.sub(b"NOW", v.encode()).decode()
    if isinstance(v, int) and v >= _NOW_MS:
        return "NOW"
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


async def _dump(store: PostgresStore) -> dict[str, list[tuple[Any, ...]]]:
    return {k: [tuple(_plain(v) for v in row) for row in await store._fetch(q)] for k, q in _DUMP.items()}


def _outcomes(outs: list[Any]) -> list[tuple[str, Any, str | None]]:
    return [(o.entity_id, o.result, type(o.error).__name__ if o.error else None) for o in outs]


async def test_set_form_writes_what_the_per_mutation_path_writes(stores):
    fast, ref = stores
    for st in (fast, ref):
        await st.mutate(TENANT, _setup())
    got, want = await fast.mutate(TENANT, _mixed()), await ref.mutate(TENANT, _mixed())
    assert _outcomes(got) == _outcomes(want)
    assert [o[2] for o in _outcomes(got)] == [None, None, "BadRequestData", None, None, None, None, None,
                                              "InternalError", None, "InternalError", None]
    a, b = await _dump(fast), await _dump(ref)
    for table in _DUMP:
        assert a[table] == b[table], table
    # what the call was meant to exercise is there
    assert [r[0] for r in a["entities"]] == [_e(1), _e(2), _e(4), _e(10)]
    hist = [(r[0], r[3], r[7], r[6] is not None) for r in a["tinstances"] if r[1] == A]
    assert (_e(2), 1714558500000, 7.0, False) in hist and (_e(2), 1714558500000, 2.0, False) not in hist
    assert [h for h in hist if h[0] == _e(1) and h[1] == 1714558800000] == [(_e(1), 1714558800000, 3.5, False)]
    assert [h for h in hist if h[0] == _e(10) and h[1] == 1714558500000] == [(_e(10), 1714558500000, 4.5, False)]
    # one per written mutation (4 in _setup), none for the failed ones
    assert len(a["outbox"]) == len(a["audit"]) == 4 + 8
    assert any(r[6] is not None for r in a["tinstances"])    # the dropped attribute's deletion instance


async def test_set_form_single_calls_and_a_batch_agree(stores):
    """The mixed call as one batch (set form) = the same mutations one call each (set form)."""
    fast, ref = stores
    ref.set_form = True
    for st in (fast, ref):
        await st.mutate(TENANT, _setup())
    got = await fast.mutate(TENANT, _mixed())
    want = [o for m in _mixed() for o in await ref.mutate(TENANT, [m])]
    assert _outcomes(got) == _outcomes(want)
    a, b = await _dump(fast), await _dump(ref)
    for table in _DUMP:
        if table != "tbuckets":
            assert a[table] == b[table], table
    # a re-sent observation's hour is recomputed from its rows (once, after the batch; after that write,
    # one at a time): the same counts, and sums here exact (halves and small integers)
    assert a["tbuckets"] == b["tbuckets"]


async def test_delete_then_create_again_in_one_call(stores):
    fast, ref = stores
    for st in (fast, ref):
        await st.mutate(TENANT, _setup())
    at = "2024-05-02T00:00:00.000Z"

    def calls() -> list[Mutation]:
        return [Mutation(_e(1), _delete), Mutation(_e(1), _set(_e(1), at, {B: [_inst(1)]})),
                Mutation(_e(2), _set(_e(2), at, {B: [_inst(2)]}))]
    assert _outcomes(await fast.mutate(TENANT, calls())) == _outcomes(await ref.mutate(TENANT, calls()))
    a, b = await _dump(fast), await _dump(ref)
    assert a == b
    assert [r[0] for r in a["entities"]] == [_e(2), _e(3), _e(4), _e(1)]


async def test_statements_per_call_do_not_grow_with_the_batch(stores, tmp_path):
    """The point of the set form: a 200-entity call costs as many statements and round trips as a
    2-entity one (counted by libpq's own protocol trace of the store's one pool connection)."""
    fast, _ = stores
    await fast.close()
    fast.pool_min = fast.pool_max = 1
    await fast.open()
    await fast.mutate(TENANT, _setup())
    counts = []
    for run, n in enumerate((2, 200, 2, 200)):    # the first two prepare the statements
        trace = tmp_path / f"trace{run}"
        with trace.open("w") as f:
            async with fast.pool.connection() as conn:
                conn.pgconn.trace(f.fileno())
                conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            muts = [Mutation(_e((run + 1) * 1000 + i), _set(_e((run + 1) * 1000 + i), "2024-05-03T00:00:00.000Z",
                                                            {A: [_inst(i, PT)], G: [LOC]})) for i in range(n)]
            muts += [Mutation(_e(k), _set(_e(k), "2024-05-03T00:00:00.000Z", {A: [_inst(n, PT)]})) for k in (1, 2)]
            outs = await fast.mutate(TENANT, muts)
            assert all(o.error is None for o in outs)
            async with fast.pool.connection() as conn:
                conn.pgconn.untrace()
        lines = [ln.split("\t") for ln in trace.read_text().splitlines()]
        statements = sum(1 for ln in lines if ln[0] == "F" and ln[2] in ("Execute", "Query"))
        # the client waits for the server after each Sync, simple Query or Flush request (one
        # right after a Sync adds no wait)
        sent = [ln[2] for ln in lines if ln[0] == "F"]
        trips = sum(1 for i, m in enumerate(sent) if m in ("Sync", "Query") or (m == "Flush" and sent[i - 1] != "Sync"))
        counts.append((statements, trips))
    assert counts[2] == counts[3], counts
    # BEGIN, lock, SAVEPOINT, entities, temporal entities, re-sent observations, instances + buckets,
    # 2 x bucket recompute, audit, outbox lock, outbox rows, RELEASE, change announcement, COMMIT (+1)
    assert counts[3][0] <= 16, counts
    # round trips: pipeline mode sends what needs no answer with the next statement that does
    assert counts[3][1] <= 12, counts


# ---- API level, both backends ---------------------------------------------------------------------

def _mixed_batch() -> list[dict[str, Any]]:
    return [
        vehicle(1, speed=prop(10, observedAt="2024-05-01T10:00:00Z")),
        vehicle(2, speed=prop(20, observedAt="2024-05-01T10:00:00Z"), note=prop("n")),
        {"id": "urn:ngsi-ld:Vehicle:3", "speed": prop(1)},                                 # no type
        vehicle(1, speed=prop(11, observedAt="2024-05-01T10:05:00Z"), colour=prop("red")),  # repeated id
        {"id": "not a uri", "type": "Vehicle"},
        vehicle(4, speed=prop(40, observedAt="2024-05-01T10:00:00Z")),
    ]


async def _state(client: Any) -> dict[str, Any]:
    out = {}
    for n in (1, 2, 3, 4):
        eid = f"urn:ngsi-ld:Vehicle:{n}"
        r = await client.get(f"/entities/{eid}")
        t = await client.get(f"/temporal/entities/{eid}")
        out[eid] = (r.status_code, r.json(), t.status_code, t.json())
    return out


async def test_mixed_batch_answers_and_history(client):
    await client.post("/entities", json=vehicle(2, speed=prop(5, observedAt="2024-05-01T09:00:00Z")))
    r = await client.post("/entityOperations/upsert", json=_mixed_batch())
    assert r.status_code == 207, r.text
    body = r.json()
    assert sorted(body["success"]) == ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2", "urn:ngsi-ld:Vehicle:4"]
    assert sorted((e["entityId"], e["error"]["type"]) for e in body["errors"]) == [
        ("not a uri", ERRORS + "BadRequestData"), ("urn:ngsi-ld:Vehicle:3", ERRORS + "BadRequestData")]
    batch_state = await _state(client)
    # the same, one request per entity, after deleting everything
    for n in (1, 2, 4):
        await client.delete(f"/temporal/entities/urn:ngsi-ld:Vehicle:{n}")
        await client.delete(f"/entities/urn:ngsi-ld:Vehicle:{n}")
    await client.post("/entities", json=vehicle(2, speed=prop(5, observedAt="2024-05-01T09:00:00Z")))
    for ent in _mixed_batch():
        await client.post("/entityOperations/upsert", json=[ent])
    one_by_one = await _state(client)

    def strip(state: dict[str, Any]) -> Any:
        """System times differ between the two runs; everything else must not."""
        def clean(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items() if k not in ("createdAt", "modifiedAt", "instanceId")}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x
        return clean(state)
    assert strip(batch_state) == strip(one_by_one)
    v1 = batch_state["urn:ngsi-ld:Vehicle:1"]
    assert v1[0] == 200 and v1[1]["speed"]["value"] == 11 and v1[1]["colour"]["value"] == "red"
    assert sorted(i["value"] for i in v1[3]["speed"]) == [10, 11]
