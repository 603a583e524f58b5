"""Listener state follows only the writes that commit (PostgreSQL store).

The PostgreSQL store may run a write's ChangeListeners more than once (set-form decision then
per-mutation fallback, a creation race, a deadlock retry) or run them for a transaction that
then fails. Two kinds of listener state must not keep what did not commit:

* the subscription throttle (``Matcher``): a discarded run must not start the throttle window,
  or the run that commits is suppressed and its notification is lost;
* reserved-entity caches (``ReservedCache``): a rolled-back write must not stay in force.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from urbanmim.errors import InternalError
from urbanmim.service.reserved import ReservedCache
from urbanmim.store.base import Mutation
from urbanmim.store.postgres import PostgresStore
from urbanmim.subscriptions.matching import Matcher, compile_subscription

pytestmark = pytest.mark.postgres

T = "https://example.org/T"
R = "https://example.org/Rule"
ALLOW = "https://example.org/allow"


class _Ctx:
    def expand(self, term: str) -> str:
        return term


def _set(eid: str, attrs: dict[str, Any]) -> Callable[[Any], tuple[Any, str]]:
    def fn(cur: Any) -> tuple[Any, str]:
        ent = copy.deepcopy(cur) if cur else {"id": eid, "type": [T], "createdAt": "2024-05-01T09:00:00.000Z",
                                              "attrs": {}}
        ent["modifiedAt"] = "2024-05-01T09:00:00.000Z"
        ent["attrs"].update(copy.deepcopy(attrs))
        return ent, "ok"
    return fn


def _value(v: Any) -> dict[str, Any]:
    return {"https://example.org/v": [{"type": "Property", "value": v}]}


@pytest.fixture
async def store(pg_db: str) -> AsyncIterator[PostgresStore]:
    st = PostgresStore(pg_db, pool_min=1, pool_max=3)
    await st.open()
    try:
        yield st
    finally:
        await st.close()


def _throttled_matcher(st: PostgresStore) -> None:
    m = Matcher()
    m.put(compile_subscription("city", {"id": "urn:ngsi-ld:Subscription:t", "type": "Subscription",
                                        "entities": [{"type": T}], "throttling": 60, "notification": {}},
                               _Ctx(), _Ctx()))
    st.listeners.append(m)


async def _outbox(st: PostgresStore) -> int:
    return len(await st._fetch("SELECT 1 FROM outbox"))


@pytest.mark.parametrize("set_form", [True, False])
async def test_throttled_subscription_is_notified_when_the_batch_falls_back(store: PostgresStore,
                                                                            set_form: bool) -> None:
    """An attribute name PostgreSQL cannot store makes the set-form write fall back."""
    _throttled_matcher(store)
    store.set_form = set_form
    outs = await store.mutate("city", [Mutation("urn:a", _set("urn:a", _value(1))),
                                       Mutation("urn:b", _set("urn:b", {"https://example.org/bad\x00": [
                                           {"type": "Property", "value": 1}]}))])
    assert outs[0].error is None and outs[1].error is not None
    assert await _outbox(store) == 1


async def test_throttled_subscription_is_notified_on_delete_then_create(store: PostgresStore) -> None:
    await store.mutate("city", [Mutation("urn:a", _set("urn:a", _value(1)))])
    _throttled_matcher(store)
    await store.mutate("city", [Mutation("urn:a", lambda cur: (None, "deleted")),
                                Mutation("urn:a", _set("urn:a", _value(2)))])
    assert await _outbox(store) == 1


async def test_throttled_subscription_is_notified_when_a_creation_races(store: PostgresStore) -> None:
    """Another connection creates one of the batch's entities while the batch waits for its lock."""
    await store.mutate("city", [Mutation("urn:z", _set("urn:z", _value(0)))])
    tid = await store._tid("city")
    _throttled_matcher(store)
    async with store.pool.connection() as probe:
        row = await (await probe.execute("SHOW search_path")).fetchone()
    assert row is not None
    other = await psycopg.AsyncConnection.connect(store.conninfo, options=f"-c search_path={row[0]}")
    try:
        await other.execute("INSERT INTO entities(tid, id, doc) VALUES (%s, 'urn:a', %s)",
                            (tid, b'{"id":"urn:a","type":["%s"],"attrs":{}}' % T.encode()))
        task = asyncio.create_task(store.mutate("city", [Mutation("urn:a", _set("urn:a", _value(1))),
                                                         Mutation("urn:b", _set("urn:b", _value(2)))]))
        await asyncio.sleep(0.5)
        await other.commit()
    finally:
        await other.close()
    outs = await task
    assert [o.error for o in outs] == [None, None]
    assert await _outbox(store) == 1


class _Rules(ReservedCache):
    reserved_types = frozenset({R})

    def __init__(self) -> None:
        self.view: dict[str, Any] = {}

    def apply(self, tenant: str, eid: str, ent: Any) -> None:
        if ent is None:
            self.view.pop(eid, None)
        else:
            self.view[eid] = ent["attrs"][ALLOW][0]["value"]


def _rule(eid: str, allow: bool) -> Callable[[Any], tuple[Any, str]]:
    return lambda cur: ({"id": eid, "type": [R], "attrs": {ALLOW: [{"type": "Property", "value": allow}]}}, "ok")


async def test_a_rolled_back_write_does_not_stay_in_a_reserved_cache(store: PostgresStore) -> None:
    rules = _Rules()
    store.listeners.append(rules.on_change)

    async def reload(tenant: str | None) -> None:
        rules.load("city", [e for e in [await store.get("city", "urn:r")] if e is not None])

    follower = rules.follow(store, reload, "test rules")
    assert follower is not None
    await store.mutate("city", [Mutation("urn:r", _rule("urn:r", False))])
    await follower.idle()
    async with store.pool.connection() as c:      # the next COMMIT fails (stands for any failure at commit)
        await c.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'commit refused'; END $$")
        await c.execute("CREATE CONSTRAINT TRIGGER refuse AFTER UPDATE ON entities DEFERRABLE INITIALLY "
                        "DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()")
    with pytest.raises(InternalError):
        await store.mutate("city", [Mutation("urn:r", _rule("urn:r", True))])
    for _ in range(100):
        await follower.idle()
        if rules.view.get("urn:r") is False:
            break
        await asyncio.sleep(0.02)
    stored = await store.get("city", "urn:r")
    assert stored is not None and stored["attrs"][ALLOW][0]["value"] is False
    assert rules.view["urn:r"] is False
