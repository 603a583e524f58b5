"""Shared helpers for the HTTP API tests (``tests/test_api_*.py``)."""

from __future__ import annotations

from typing import Any

import httpx

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
LD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"


def link(url: str) -> dict[str, str]:
    """The Link header that carries a JSON-LD @context with application/json (clause 6.3.5)."""
    return {"Link": f'<{url}>; rel="{LD_CONTEXT_REL}"; type="application/ld+json"'}


def media(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip()


def assert_problem(resp: httpx.Response, status: int, problem: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """An NGSI-LD ProblemDetails answer (clause 5.5.2 / RFC 7807) with the given status and type.

    ``problem`` may be a tuple when the spec leaves the choice open (e.g. InvalidRequest or
    BadRequestData for a payload of the wrong JSON kind).
    """
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert media(resp) == JSON, resp.headers.get("content-type")
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str) and body["type"].startswith(ERRORS), body
    if problem is not None:
        allowed = (problem,) if isinstance(problem, str) else problem
        assert body["type"] in [ERRORS + p for p in allowed], body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def vehicle(n: int | str = 1, **attrs: Any) -> dict[str, Any]:
    """A small normalized Vehicle entity."""
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:Vehicle:{n}", "type": "Vehicle"}
    ent.update(attrs)
    return ent


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, **extra}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


async def create(client: httpx.AsyncClient, entity: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    r = await client.post("/entities", json=entity, headers=headers)
    assert r.status_code == 201, r.text


async def get(client: httpx.AsyncClient, eid: str, **params: Any) -> httpx.Response:
    headers = params.pop("headers", None)
    return await client.get(f"/entities/{eid}", params=params or None, headers=headers)


async def query_ids(client: httpx.AsyncClient, params: dict[str, Any],
                    headers: dict[str, str] | None = None) -> list[str]:
    r = await client.get("/entities", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return sorted(e["id"] for e in r.json())


def check_all(cases: list[tuple[Any, Any]], check: Any) -> None:
    """Run ``check(expected, actual)`` for every (case, value) pair and report all failures at once.

    Lets one test (one app, one database) cover a table of cases without stopping at the first
    mismatch, so the test suite stays fast and a failure still names every failing case.
    """
    failures = []
    for case, value in cases:
        try:
            check(case, value)
        except AssertionError as e:
            failures.append(f"{case!r}: {e}")
    assert not failures, "\n".join(failures)
