"""Every official example of the bundled Smart Data Models, checked against its own schema.

Key-values examples (``example.json``, ``example.jsonld``) are validated as they are; the
normalized one (``example-normalized.jsonld``) goes through the broker's payload parser and
the key-values view, so the NGSI attribute kinds are checked too. The upstream examples
that do not conform are listed in :data:`INVALID` with the attributes at fault (see
docs/mim2-validation.md for the reasons); every other example must pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import JSONLD
from tests.test_models_support import (
    SDM,
    models_app,
    models_client,
    needs_sdm,
    no_network,
    preload_contexts,
)
from urbanmim.models.smartdatamodels import SdmCatalog
from urbanmim.models.validator import compile_model
from urbanmim.ngsild.contexts import ContextRegistry
from urbanmim.ngsild.payload import parse_entity

FIXTURES = (models_app, models_client, no_network)   # imported for pytest, used by name
pytestmark = [needs_sdm, pytest.mark.usefixtures("no_network")]

EXAMPLES = ("example.json", "example.jsonld", "example-normalized.jsonld")
# (model, example) -> attributes at fault, or "not JSON"
INVALID: dict[tuple[str, str], Any] = {
    ("AirQualityObserved", "example.json"): {"tsp"},
    ("AirQualityObserved", "example-normalized.jsonld"): {"tsp", "windDirection"},
    ("Building", "example-normalized.jsonld"): {"containedInPlace", "mapUrl", "owner"},
    ("Device", "example-normalized.jsonld"): {"controlledAsset"},
    ("KeyPerformanceIndicator", "example-normalized.jsonld"): {"dateNextCalculation"},
    ("PointOfInterest", "example.jsonld"): "not JSON",
    ("Streetlight", "example-normalized.jsonld"): {"feederID"},
    ("Vehicle", "example-normalized.jsonld"): {"deviceBatteryStatus", "vehicleAltitude"},
}


def _models() -> list[Path]:
    return sorted(SDM.glob("*/*/schema.json")) if SDM.is_dir() else []


_CATALOG: SdmCatalog | None = None


def _catalog() -> SdmCatalog:
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = SdmCatalog(SDM)
    return _CATALOG


def _offline_contexts() -> ContextRegistry:
    def fetch(url: str) -> Any:
        raise AssertionError(f"context fetch attempted: {url}")
    reg = ContextRegistry(fetch=fetch)
    preload_contexts(reg)
    return reg


def test_bundle_has_the_22_models() -> None:
    assert len(_models()) == 22


@pytest.mark.parametrize("schema_path", _models(), ids=lambda p: p.parent.name)
def test_official_examples(schema_path: Path) -> None:
    cat = _catalog()
    name, subject = schema_path.parent.name, schema_path.parent.parent.name
    model = cat.lookup(f"sdm:{subject}/{name}")
    schema = cat.full_schema(model)
    assert schema is not None and schema.get("$id") == model.schema_id
    cm = compile_model(model.source, name, "full", schema, cat.registry())
    assert cm.level == "full"
    contexts = _offline_contexts()
    for example in EXAMPLES:
        expected = INVALID.get((name, example), set())
        try:
            body = json.loads((schema_path.parent / "examples" / example).read_text(encoding="utf-8"))
        except ValueError:
            assert expected == "not JSON", (name, example)
            continue
        ctx_value = body.pop("@context", None)
        if example == "example-normalized.jsonld":
            ctx = contexts.resolve_sync(ctx_value)
            issues = cm.validate(parse_entity(body, ctx), ctx)
        else:
            issues = cm.schema_issues(body)
        assert {i.attribute for i in issues} == expected, (name, example, [i.to_json() for i in issues])


def test_packaged_metadata_covers_1118_models() -> None:
    models = _catalog().models()
    assert len(models) == 1118
    with pytest.raises(Exception, match="ambiguous"):
        _catalog().lookup("sdm:Vehicle")           # Transportation and ERA both define it
    assert _catalog().lookup("sdm:Transportation/Vehicle").subject == "dataModel.Transportation"


async def test_valid_normalized_examples_are_accepted_in_strict_mode(models_client: httpx.AsyncClient) -> None:
    """End to end: a strict policy per model, then every conforming normalized example is created."""
    created = 0
    for schema_path in _models():
        name, subject = schema_path.parent.name, schema_path.parent.parent.name
        body = json.loads((schema_path.parent / "examples" / "example-normalized.jsonld").read_text(encoding="utf-8"))
        ctx = body["@context"]
        r = await models_client.put(f"/models/v1/policies/{name}", json={
            "@context": ctx, "mode": "strict", "source": f"sdm:{subject}/{name}"},
            headers={"Content-Type": JSONLD})
        assert r.status_code == 201, r.text
        assert r.json()["level"] == "full"
        r = await models_client.post("/ngsi-ld/v1/entities", content=json.dumps(body),
                                     headers={"Content-Type": JSONLD})
        if (name, "example-normalized.jsonld") in INVALID:
            assert r.status_code == 400, (name, r.text)
            for attr in INVALID[(name, "example-normalized.jsonld")]:
                assert attr in r.json()["detail"]
        else:
            assert r.status_code == 201, (name, r.text)
            created += 1
    assert created == 22 - 6
