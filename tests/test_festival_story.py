"""The festival story (issue 6): a culture network stays together because each festival stays in control.

Three festivals (organisations A, B, C) in the ``culture`` tenant each store the NFC opinions their
visitors give on art works. Each offers its opinions to the others (ODRL: use them for a service
purpose, never see who wrote them); all accept. Each then sees the others' opinions — in queries,
retrievals, a subscription notification and temporal reads. Festival C withdraws its offer: A and B
still see each other's opinions, C's disappear from their views on every path, and C still sees its
own. Real bearer tokens from the development issuer; security on; in-process broker, real HTTP
notification receiver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security_helpers import client, secure_app, token
from tests.test_notifications import Receiver

CULTURE = "culture"
FESTIVALS = ("A", "B", "C")
ORG = {f: f"festival-{f.lower()}" for f in FESTIVALS}
PURPOSE = "dpv:ServiceOptimisation"           # narrower than the offers' dpv:ServiceProvision


def opinion(f: str, n: int, rating: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Opinion:{f}-{n}", "type": "Opinion",
            "refArtwork": {"type": "Relationship", "object": f"urn:ngsi-ld:Artwork:{n}"},
            "rating": {"type": "Property", "value": rating},
            "comment": {"type": "Property", "value": f"seen at festival {f}"},
            "author": {"type": "Property", "value": f"visitor-{f}-{n}"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.0 + n, 52.0]}}}


def offer(f: str) -> dict[str, Any]:
    return {"title": f"Opinions of festival {f}", "description": "NFC opinions of visitors on art works",
            "theme": ["http://publications.europa.eu/resource/authority/data-theme/EDUC"],
            "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Offer",
                       "target": {"entityType": "Opinion"},
                       "permission": [{"action": "use", "constraint": [
                           {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:ServiceProvision"}],
                           "duty": [{"action": "attribute"}]}],
                       "prohibition": [{"action": "use",
                                        "target": {"entityType": "Opinion", "attributes": ["author"]}}]}}


@pytest.fixture
async def app(tmp_path: Path, db_target: str) -> AsyncIterator[Any]:
    """A secure broker, over SQLite and over PostgreSQL (``db_target``)."""
    async for a in secure_app(tmp_path, db=db_target, sharing_flush_interval=0.2):
        yield a


def member(app: Any, f: str, base: str = "/ngsi-ld/v1") -> httpx.AsyncClient:
    """A festival's data manager: editor in the culture tenant, member of its festival organisation."""
    bearer = token(app, {CULTURE: ["editor"]}, subject=f"manager@{ORG[f]}", org=ORG[f], purpose=PURPOSE)
    return client(app, bearer, tenant=CULTURE, base=base)


async def ids(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await c.get("/entities", params={"type": "Opinion", "limit": 100})
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()}


async def temporal_ids(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await c.get("/temporal/entities", params={"type": "Opinion", "timerel": "after",
                                                  "timeAt": "2000-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()}


async def test_festival_story(app: Any) -> None:
    admin = token(app, {CULTURE: ["admin"]}, subject="admin@culture")
    async with client(app, admin, tenant=CULTURE, base="/sharing/v1") as c:
        for f in FESTIVALS:
            r = await c.post("/organisations", json={"id": ORG[f], "name": f"Festival {f}"})
            assert r.status_code == 201, r.text

    # each festival stores its opinions and offers them to the others
    offers = {}
    for f in FESTIVALS:
        async with member(app, f) as c:
            for n in (1, 2):
                r = await c.post("/entities", json=opinion(f, n, 3))
                assert r.status_code == 201, r.text
        async with member(app, f, "/sharing/v1") as c:
            r = await c.post("/offers", json=offer(f))
            assert r.status_code == 201, r.text
            offers[f] = r.json()["id"]

    # before any agreement: a festival sees its own opinions only
    async with member(app, "A") as c:
        assert sorted(await ids(c)) == ["urn:ngsi-ld:Opinion:A-1", "urn:ngsi-ld:Opinion:A-2"]
        assert (await c.get("/entities/urn:ngsi-ld:Opinion:B-1")).status_code == 404

    # everyone accepts everyone else's offer
    for f in FESTIVALS:
        async with member(app, f, "/sharing/v1") as c:
            for g in FESTIVALS:
                if g != f:
                    r = await c.post(f"/offers/{offers[g]}/accept")
                    assert r.status_code == 201, r.text
                    assert r.json()["consumer"] == ORG[f] and r.json()["provider"] == ORG[g]

    everything = {f"urn:ngsi-ld:Opinion:{f}-{n}" for f in FESTIVALS for n in (1, 2)}
    for f in FESTIVALS:
        async with member(app, f) as c:
            seen = await ids(c)
            assert set(seen) == everything
            for eid, e in seen.items():
                own = eid.startswith(f"urn:ngsi-ld:Opinion:{f}-")
                assert ("author" in e) is own, (f, eid)          # the prohibition hides who wrote it
                assert e["rating"]["value"] == 3 and "comment" in e
            other = next(g for g in FESTIVALS if g != f)
            r = await c.get(f"/entities/urn:ngsi-ld:Opinion:{other}-1")
            assert r.status_code == 200 and "author" not in r.json()
            # a purpose the offers do not cover sees nothing of the others
            r = await c.get("/entities", params={"type": "Opinion"}, headers={"Urbanmim-Purpose": "dpv:Marketing"})
            assert {e["id"] for e in r.json()} == {f"urn:ngsi-ld:Opinion:{f}-1", f"urn:ngsi-ld:Opinion:{f}-2"}

    # subscriptions: A is notified of B's and C's opinions (without authors)
    receiver = Receiver().start()
    try:
        async with member(app, "A") as c:
            r = await c.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": "Opinion"}],
                                                     "watchedAttributes": ["rating"],
                                                     "notification": {"endpoint": {"uri": receiver.url}}})
            assert r.status_code == 201, r.text
        for f in ("B", "C"):
            async with member(app, f) as c:
                r = await c.patch(f"/entities/urn:ngsi-ld:Opinion:{f}-1/attrs", json={"rating": {
                    "type": "Property", "value": 5}})
                assert r.status_code == 204, r.text
        got = {e["id"]: e for e in await receiver.wait_entities(2)}
        assert set(got) == {"urn:ngsi-ld:Opinion:B-1", "urn:ngsi-ld:Opinion:C-1"}
        assert all("author" not in e and e["rating"]["value"] == 5 for e in got.values())

        # temporal reads: the others' history, without authors
        async with member(app, "A") as c:
            hist = await temporal_ids(c)
            assert set(hist) == everything
            assert "author" not in hist["urn:ngsi-ld:Opinion:C-1"] and "author" in hist["urn:ngsi-ld:Opinion:A-1"]
            r = await c.get("/temporal/entities/urn:ngsi-ld:Opinion:C-1")
            assert r.status_code == 200 and [i["value"] for i in r.json()["rating"]] == [3, 5]

        # festival C withdraws its offer
        async with member(app, "C", "/sharing/v1") as c:
            r = await c.post(f"/offers/{offers['C']}/withdraw")
            assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text
        receiver.got.clear()

        without_c = {e for e in everything if ":C-" not in e}
        for f in ("A", "B"):
            async with member(app, f) as c:
                assert set(await ids(c)) == without_c                     # query
                assert (await c.get("/entities/urn:ngsi-ld:Opinion:C-1")).status_code == 404   # retrieval
                assert set(await temporal_ids(c)) == without_c            # temporal query
                assert (await c.get("/temporal/entities/urn:ngsi-ld:Opinion:C-2")).status_code == 404
                other = "B" if f == "A" else "A"
                r = await c.get(f"/entities/urn:ngsi-ld:Opinion:{other}-2")   # A and B keep sharing
                assert r.status_code == 200 and "author" not in r.json()

        # notifications: C's changes no longer reach A; B's still do
        for f in ("C", "B"):
            async with member(app, f) as c:
                r = await c.patch(f"/entities/urn:ngsi-ld:Opinion:{f}-2/attrs", json={"rating": {
                    "type": "Property", "value": 1}})
                assert r.status_code == 204
        got = await receiver.wait_entities(1)
        import asyncio
        await asyncio.sleep(0.5)                 # give a (wrong) notification of C-2 time to arrive
        assert [e["id"] for e in receiver.entities()] == ["urn:ngsi-ld:Opinion:B-2"], got
    finally:
        receiver.stop()

    # C still sees its own opinions (with authors) — and, as its own agreements stand, A's and B's
    async with member(app, "C") as c:
        seen = await ids(c)
        assert set(seen) == everything
        assert "author" in seen["urn:ngsi-ld:Opinion:C-2"] and seen["urn:ngsi-ld:Opinion:C-2"]["rating"]["value"] == 1
        assert "author" not in seen["urn:ngsi-ld:Opinion:A-1"]

    # the catalogue lists A's and B's offers only; agreements on C's offer are no longer in force
    async with client(app, admin, tenant=CULTURE, base="/sharing/v1") as c:
        r = await c.get("/catalogue")
        assert sorted(d["dct:publisher"]["foaf:name"] for d in r.json()["dcat:dataset"]) == ["Festival A",
                                                                                            "Festival B"]
        r = await c.get("/agreements")
        in_force = {(a["consumer"], a["provider"]) for a in r.json() if a["inForce"]}
        assert in_force == {(ORG[f], ORG[g]) for f in ("A", "B", "C") for g in ("A", "B") if f != g}

    # and A can ask why it no longer sees C's opinion
    async with member(app, "A", "/sharing/v1") as c:
        r = await c.post("/explain", json={"entity": "urn:ngsi-ld:Opinion:C-1", "attribute": "rating"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["visible"] is False and out["owner"] == ORG["C"] and out["agreements"] == []
        sharing = next(d for d in out["decisions"] if d["source"] == "sharing")
        assert sharing["effect"] == "deny" and "no agreement" in sharing["reason"]
