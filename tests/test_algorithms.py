"""MIM5: the algorithm register and its API."""

from __future__ import annotations

import pytest

from urbanmim.algorithms.register import Algorithm, AlgorithmRegister, Risk


def _alg(version: str = "1", **kw: object) -> Algorithm:
    base = dict(id="test.alg", name="Test", version=version, kind="analysis", purpose="p", method="m",
                inputs=("a",), outputs=("b",), owner="o", contact="c", human_oversight="h",
                risks=(Risk("r", "m"),))
    base.update(kw)
    return Algorithm(**base)  # type: ignore[arg-type]


def test_register_keeps_versions_and_lists_newest() -> None:
    reg = AlgorithmRegister()
    reg.register(_alg("1"))
    reg.register(_alg("1.10"))
    reg.register(_alg("1.9"))
    assert [a.version for a in reg.versions("test.alg")] == ["1", "1.9", "1.10"]
    assert reg.get("test.alg").version == "1.10"
    assert reg.get("test.alg", "1.9").version == "1.9"
    assert [a.version for a in reg.all()] == ["1.10"]


def test_same_version_with_another_description_is_refused() -> None:
    reg = AlgorithmRegister()
    reg.register(_alg("1"))
    reg.register(_alg("1"))        # identical: fine (components may install twice)
    with pytest.raises(ValueError, match="bump the version"):
        reg.register(_alg("1", purpose="changed"))


def test_required_fields_and_kind_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        _alg(kind="magic")
    with pytest.raises(ValueError, match="owner"):
        _alg(owner="")


async def test_api_lists_platform_algorithms(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("http://testserver/algorithms/v1/algorithms")
    assert r.status_code == 200
    ids = {a["id"]: a for a in r.json()}
    v = ids["mim2.write-validation"]
    assert v["kind"] == "validation" and v["humanOversight"] and v["risks"][0]["mitigation"]
    r = await client.get("http://testserver/algorithms/v1/algorithms", params={"kind": "validation"})
    assert {a["kind"] for a in r.json()} == {"validation"}
    r = await client.get("http://testserver/algorithms/v1/algorithms/mim2.write-validation")
    assert r.status_code == 200 and r.json()["versions"] == ["1"]
    r = await client.get("http://testserver/algorithms/v1/algorithms/nope")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    r = await client.get("http://testserver/algorithms/v1/algorithms", params={"kind": "magic"})
    assert r.status_code == 400


async def test_register_page_lists_entries_in_the_requested_language(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("http://testserver/algorithms/", params={"lang": "de"})
    assert r.status_code == 200 and r.headers["content-language"] == "de"
    html = r.text
    assert '<html lang="de">' in html and "Algorithmenregister" in html
    assert "Smart Data Models write validation" in html and "Menschliche Aufsicht" in html
    r = await client.get("http://testserver/algorithms/", params={"kind": "validation"})
    assert r.status_code == 200 and "mim2.write-validation" in r.text
    r = await client.get("http://testserver/algorithms/", params={"kind": "magic"})
    assert r.status_code == 400 and r.json()["type"].endswith("InvalidRequest")
