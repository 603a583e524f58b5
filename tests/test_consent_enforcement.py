"""MIM4 with security on (MIM6 dev-issuer tokens), on both backends: personal attributes are hidden in
retrieve, query, temporal reads and notifications unless the caller is the subject or holds a
consent for the stated purpose; revocation holds from the next request; who may call what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, prop, rel
from tests.test_notifications import Receiver
from urbanmim.app import create_app
from urbanmim.security.tokens import issue
from urbanmim.settings import Settings

TENANT = "portamar"
C = "/consent/v1"
N = "/ngsi-ld/v1"
ALICE, BOB = "urn:ngsi-ld:Person:alice", "urn:ngsi-ld:Person:bob"
CAR = "urn:ngsi-ld:Vehicle:car1"
PERSONAL = {"driverName", "phone"}
SECRETS = ("Alice A.", "+31 600000001")


@pytest.fixture
async def secure_app(db_target: str) -> AsyncIterator[Any]:
    application = create_app(Settings(db=db_target, sqlite_synchronous="NORMAL", secure=True))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def web(secure_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=secure_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def auth(app: Any, subject: str, role: str = "reader", org: str | None = None, purpose: str | None = None,
         tenant: str = TENANT) -> dict[str, str]:
    tok = issue(app.state.security.dev_key, subject=subject, roles={tenant: [role]}, audience="urbanmim",
                organisation=org)
    h = {"Authorization": f"Bearer {tok}", "NGSILD-Tenant": tenant}
    if purpose:
        h["Urbanmim-Purpose"] = purpose
    return h


async def setup_city(web: httpx.AsyncClient, app: Any) -> dict[str, str]:
    admin = auth(app, "city-admin", "admin")
    r = await web.put(f"{C}/personal-data/Vehicle", headers=admin,
                      json={"attributes": sorted(PERSONAL), "subject": "refDataSubject"})
    assert r.status_code == 201, r.text
    car = {"id": CAR, "type": "Vehicle", "refDataSubject": rel(ALICE), "driverName": prop("Alice A."),
           "phone": prop("+31 600000001"), "speed": prop(50)}
    assert (await web.post(f"{N}/entities", headers=admin, json=car)).status_code == 201
    await web.patch(f"{N}/entities/{CAR}/attrs", headers=admin, json={"speed": prop(60)})
    return admin


async def seen(web: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, set[str]]:
    """The attributes of the car a caller sees on each read path."""
    out: dict[str, set[str]] = {}
    r = await web.get(f"{N}/entities/{CAR}", headers=headers)
    assert r.status_code == 200, r.text
    out["retrieve"] = set(r.json()) - {"id", "type"}
    r = await web.get(f"{N}/entities", params={"type": "Vehicle"}, headers=headers)
    (ent,) = r.json()
    out["query"] = set(ent) - {"id", "type"}
    r = await web.get(f"{N}/temporal/entities/{CAR}", headers=headers)
    assert r.status_code == 200, r.text
    out["temporal"] = set(r.json()) - {"id", "type"}
    r = await web.get(f"{N}/temporal/entities", params={"type": "Vehicle"}, headers=headers)
    (tent,) = r.json()
    out["temporal-query"] = set(tent) - {"id", "type"}
    return out


async def test_consent_controls_every_read_path(web: httpx.AsyncClient, secure_app: Any) -> None:
    admin = await setup_city(web, secure_app)
    parking = auth(secure_app, "app-parking", org="org:parking", purpose="dpv:ServiceOptimisation")
    base = {"refDataSubject", "speed"}
    for path, attrs in (await seen(web, parking)).items():
        assert attrs == base, (path, attrs)
    r = await web.get(f"{N}/entities/{CAR}", headers=parking)
    assert not any(s in r.text for s in SECRETS)
    # MIM6's explain shows the consent decider's reason
    r = await web.get("/security/v1/explain", params={"id": CAR}, headers=parking)
    assert r.status_code == 200, r.text
    mine = [d for d in r.json()["decisions"] if d.get("source") == "consent"]
    assert mine and "no active consent to org:parking for dpv:ServiceOptimisation" in mine[0]["reason"], r.json()
    # a hidden value cannot be probed with q
    r = await web.get(f"{N}/entities", params={"type": "Vehicle", "q": 'phone=="+31 600000001"'}, headers=parking)
    assert r.status_code == 200 and r.json() == []

    # Alice herself sees everything, with or without a purpose
    alice = auth(secure_app, ALICE)
    for path, attrs in (await seen(web, alice)).items():
        assert attrs == base | PERSONAL, (path, attrs)

    # Alice consents to the parking operator for service provision (broader than its stated purpose)
    r = await web.post(f"{C}/consents", headers=alice, json={"recipient": "org:parking",
                                                             "purpose": "dpv:ServiceProvision"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["subject"] == ALICE and r.json()["givenBy"] == ALICE
    for path, attrs in (await seen(web, parking)).items():
        assert attrs == base | PERSONAL, (path, attrs)
    # another purpose, no purpose, another organisation, the admin: still hidden
    for h in (auth(secure_app, "app-parking", org="org:parking", purpose="dpv:Marketing"),
              auth(secure_app, "app-parking", org="org:parking"),
              auth(secure_app, "app-ads", org="org:ads", purpose="dpv:ServiceProvision"),
              {**admin, "Urbanmim-Purpose": "dpv:ServiceProvision"}):
        for path, attrs in (await seen(web, h)).items():
            assert attrs == base, (h.get("Urbanmim-Purpose"), path, attrs)

    # revoked: effective on the very next request
    assert (await web.delete(f"{C}/consents/{cid}", headers=alice)).status_code == 204
    for path, attrs in (await seen(web, parking)).items():
        assert attrs == base, (path, attrs)


async def test_consent_controls_notifications(web: httpx.AsyncClient, secure_app: Any) -> None:
    admin = await setup_city(web, secure_app)
    alice = auth(secure_app, ALICE)
    parking = auth(secure_app, "app-parking", org="org:parking", purpose="dpv:ServiceProvision")
    rec = Receiver().start()
    try:
        sub = {"type": "Subscription", "entities": [{"type": "Vehicle"}],
               "notification": {"endpoint": {"uri": rec.url, "accept": "application/json"}}}
        assert (await web.post(f"{N}/subscriptions", headers=parking, json=sub)).status_code == 201
        await web.patch(f"{N}/entities/{CAR}/attrs", headers=admin, json={"speed": prop(70)})
        (first,) = await rec.wait(1)
        assert set(first["data"][0]) - {"id", "type"} == {"refDataSubject", "speed"}
        r = await web.post(f"{C}/consents", headers=alice, json={"recipient": "org:parking",
                                                                 "purpose": "dpv:ServiceProvision"})
        cid = r.json()["id"]
        await web.patch(f"{N}/entities/{CAR}/attrs", headers=admin, json={"speed": prop(80)})
        got = await rec.wait(2)
        assert PERSONAL <= set(got[1]["data"][0])
        await web.delete(f"{C}/consents/{cid}", headers=alice)
        await web.patch(f"{N}/entities/{CAR}/attrs", headers=admin, json={"speed": prop(90)})
        got = await rec.wait(3)
        assert not PERSONAL & set(got[2]["data"][0])
        assert not any(s in str(got[0]) + str(got[2]) for s in SECRETS)
    finally:
        rec.stop()


async def test_who_may_call_the_consent_api(web: httpx.AsyncClient, secure_app: Any) -> None:
    admin = await setup_city(web, secure_app)
    alice, bob = auth(secure_app, ALICE), auth(secure_app, BOB)
    ok = {"recipient": "org:parking", "purpose": "dpv:ServiceProvision"}
    # no credentials
    assert_problem(await web.get(f"{C}/consents", headers={"NGSILD-Tenant": TENANT}), 401)
    # Bob may not act for Alice; a non-admin may not declare personal data
    assert_problem(await web.post(f"{C}/consents", headers=bob, json={**ok, "subject": ALICE}), 403, "Forbidden")
    assert_problem(await web.get(f"{C}/consents", params={"subject": ALICE}, headers=bob), 403, "Forbidden")
    assert_problem(await web.get(f"{C}/subjects/{ALICE}/export", headers=bob), 403, "Forbidden")
    assert_problem(await web.post(f"{C}/subjects/{ALICE}/erasure", headers=bob), 403, "Forbidden")
    assert_problem(await web.put(f"{C}/personal-data/Person", headers=alice, json={"attributes": ["email"]}), 403)
    assert_problem(await web.get(f"{C}/erasures", headers=alice), 403)
    # the admin acts for Alice
    r = await web.post(f"{C}/consents", headers=admin, json={**ok, "subject": ALICE})
    assert r.status_code == 201 and r.json()["givenBy"] == "city-admin"
    cid = r.json()["id"]
    assert_problem(await web.delete(f"{C}/consents/{cid}", headers=bob), 403)
    assert_problem(await web.get(f"{C}/consents/{cid}", headers=bob), 403)
    assert (await web.get(f"{C}/consents/{cid}", headers=alice)).status_code == 200
    # the recipient's members see the consents given to their organisation, not others'
    member = auth(secure_app, "app-parking", org="org:parking")
    got = (await web.get(f"{C}/consents", params={"recipient": "org:parking"}, headers=member)).json()
    assert [c["id"] for c in got] == [cid]
    assert (await web.get(f"{C}/consents/{cid}", headers=member)).status_code == 200
    # another organisation's recipient filter only narrows the member's own consents (as a subject): none
    assert (await web.get(f"{C}/consents", params={"recipient": "org:other"}, headers=member)).json() == []
    # Alice's own list defaults to her consents; Bob's is empty
    assert [c["id"] for c in (await web.get(f"{C}/consents", headers=alice)).json()] == [cid]
    assert (await web.get(f"{C}/consents", headers=bob)).json() == []
    # consent entities cannot be forged or read through NGSI-LD by non-admins
    forged = {"id": "urn:ngsi-ld:Consent:forged", "type": "urbanmim:Consent",
              "urbanmim:dataSubject": prop(ALICE), "urbanmim:recipient": prop("org:evil"),
              "urbanmim:purpose": prop("dpv:Marketing"), "urbanmim:givenAt": prop("2024-01-01T00:00:00Z"),
              "urbanmim:givenBy": prop(ALICE)}
    editor = auth(secure_app, "editor-1", "editor")
    assert_problem(await web.post(f"{N}/entities", headers=editor, json=forged), 403, "Forbidden")
    assert_problem(await web.post(f"{N}/entities", headers=admin, json=forged), 403, "Forbidden")
    r = await web.get(f"{N}/entities", params={"type": "urbanmim:Consent"}, headers=member)
    assert r.status_code == 200 and r.json() == []
    r = await web.get(f"{N}/entities", params={"type": "urbanmim:Consent"}, headers=admin)
    assert [e["id"] for e in r.json()] == [cid]


async def test_subject_exports_and_erases_with_a_token(web: httpx.AsyncClient, secure_app: Any) -> None:
    await setup_city(web, secure_app)
    alice = auth(secure_app, ALICE)
    doc = (await web.get(f"{C}/subjects/{ALICE}/export", headers=alice)).json()
    (item,) = doc["entities"]
    assert item["current"]["phone"]["value"] == "+31 600000001"
    r = await web.post(f"{C}/subjects/{ALICE}/erasure", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["requestedBy"] == "the data subject"
    admin = auth(secure_app, "city-admin", "admin")
    car = (await web.get(f"{N}/entities/{CAR}", headers=admin)).json()
    assert set(car) == {"id", "type", "speed"}
    hist = (await web.get(f"{N}/temporal/entities/{CAR}", headers=admin)).json()
    assert set(hist) == {"id", "type", "speed"}
    (rec,) = (await web.get(f"{C}/erasures", headers=admin)).json()
    assert rec["requestedBy"] == "the data subject" and ALICE not in str(rec)
