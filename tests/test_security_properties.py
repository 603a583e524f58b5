"""Property tests (Hypothesis): over random tenants, roles and attribute rules, no retrieval, query,
temporal read or notification returns an entity or attribute the caller may not see.

One secure app serves every example (its own tenants per example, so examples never see each
other's data); each example writes a random world as the platform (admin tokens), then reads
it back as a random caller through the HTTP API and compares with the independent oracle in
``tests/security_strategies.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.security_helpers import client, secure_settings, token
from tests.security_strategies import ATTRS, World, oracle, worlds
from tests.test_notifications import Receiver
from urbanmim.app import create_app
from urbanmim.ngsild.contexts import CORE as CORE_TERMS

_counter = itertools.count()
CORE = {"id", "type", "scope", "location", "createdAt", "modifiedAt", "@context"}


def _attrs(body: dict[str, Any]) -> set[str]:
    return {k for k in body if k not in CORE}


async def _build(app: Any, world: World, prefix: str) -> dict[str, str]:
    """Write the world into fresh tenants; returns world tenant name -> real tenant name."""
    names = {t: f"{prefix}{t}" for t in world.tenants}
    for t, real in names.items():
        admin = token(app, {real: ["admin", "editor"]}, subject="builder")
        async with client(app, admin, tenant=real) as c:
            for e in world.entities[t]:
                r = await c.post("/entities", json=e.body(prefix))
                assert r.status_code == 201, r.text
        async with client(app, admin, tenant=real, base="/security/v1") as c:
            for rule in world.rules[t]:
                r = await c.put(f"/rules/{rule.name}", json=rule.body())
                assert r.status_code == 201, r.text
    return names


def _caller(app: Any, world: World, names: dict[str, str], subject: str) -> str:
    roles = {names.get(t, t): r for t, r in world.roles.items()}
    return token(app, roles, subject=subject)


async def _check_reads(app: Any, world: World, prefix: str) -> None:
    names = await _build(app, world, prefix)
    tok = _caller(app, world, names, f"caller-{prefix}")
    for t, real in names.items():
        expected = {e.body(prefix)["id"]: oracle(world, t, e) for e in world.entities[t]}
        visible = {i: a for i, a in expected.items() if a is not None}
        async with client(app, tok, tenant=real) as c:
            # retrieval
            for eid, want in expected.items():
                r = await c.get(f"/entities/{eid}")
                if want is None:
                    assert r.status_code == 404, (eid, r.text)
                else:
                    assert r.status_code == 200 and _attrs(r.json()) == want, (eid, r.json(), want)
            # query, paged one by one: honest count, nothing hidden
            got: dict[str, set[str]] = {}
            for offset in range(len(expected) + 1):
                r = await c.get("/entities", params={"type": "A,B", "limit": 1, "offset": offset, "count": "true"})
                assert r.status_code == 200, r.text
                assert int(r.headers["NGSILD-Results-Count"]) == len(visible)
                for body in r.json():
                    got[body["id"]] = _attrs(body)
            assert got == visible
            # a q on every attribute: only matches what the caller may see
            for a in ATTRS:
                r = await c.get("/entities", params={"type": "A,B", "q": f"{a}>=0", "limit": 100})
                assert {b["id"] for b in r.json()} == {i for i, v in visible.items() if a in v}, a
            # temporal reads
            r = await c.get("/temporal/entities", params={"type": "A,B", "timerel": "after",
                                                          "timeAt": "2000-01-01T00:00:00Z", "limit": 100})
            assert r.status_code == 200, r.text
            temporal = {b["id"]: _attrs(b) for b in r.json()}
            assert set(temporal) <= set(visible)
            for eid, attrs in temporal.items():
                assert attrs <= visible[eid], (eid, attrs, visible[eid])


@pytest.mark.slow
def test_no_read_path_shows_what_the_caller_may_not_see(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        app = create_app(secure_settings(str(tmp_path / "prop.db")))
        cm = app.router.lifespan_context(app)
        runner.run(cm.__aenter__())
        try:
            @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(world=worlds())
            def check(world: World) -> None:
                runner.run(_check_reads(app, world, f"x{next(_counter)}"))
            check()
        finally:
            runner.run(cm.__aexit__(None, None, None))


async def _check_notifications(app: Any, world: World, prefix: str, receiver: Receiver) -> None:
    names = await _build(app, world, prefix)
    tok = _caller(app, world, names, f"sub-{prefix}")
    for t, real in names.items():
        before = len(receiver.got)
        async with client(app, tok, tenant=real) as c:
            r = await c.post("/subscriptions", json={
                "type": "Subscription", "entities": [{"type": "A"}, {"type": "B"}],
                "notification": {"endpoint": {"uri": receiver.url}}})
            if r.status_code != 201:           # a caller without any right still may subscribe
                assert r.status_code in (401, 403), r.text
                continue
        for e in world.entities[t]:    # touch every entity as the platform (no rule applies): one notification each
            frag = {"attrs": {CORE_TERMS.expand(a): [{"type": "Property", "value": v + 1}] for a, v in e.attrs.items()}}
            await app.state.entities.update_attrs(real, e.body(prefix)["id"], frag)
        expected = {e.body(prefix)["id"]: oracle(world, t, e) for e in world.entities[t]}
        must = sum(1 for v in expected.values() if v is not None)
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            ents = [d for n in receiver.got[before:] if n.get("subscriptionId") for d in n["data"]]
            if len(ents) >= must:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)            # anything that should not arrive has had its chance
        ents = [d for n in receiver.got[before:] for d in n["data"]]
        for d in ents:
            want = expected.get(d["id"])
            assert want is not None, ("notified an invisible entity", d)
            assert _attrs(d) <= want, (d, want)
        assert {d["id"] for d in ents} == {i for i, v in expected.items() if v is not None}


@pytest.mark.slow
def test_no_notification_shows_what_the_subscriber_may_not_see(tmp_path: Path) -> None:
    receiver = Receiver().start()
    with asyncio.Runner() as runner:
        app = create_app(secure_settings(str(tmp_path / "propn.db")))
        cm = app.router.lifespan_context(app)
        runner.run(cm.__aenter__())
        try:
            @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(world=worlds(tenant_names=("t1",)))
            def check(world: World) -> None:
                runner.run(_check_notifications(app, world, f"n{next(_counter)}", receiver))
            check()
        finally:
            runner.run(cm.__aexit__(None, None, None))
            receiver.stop()
