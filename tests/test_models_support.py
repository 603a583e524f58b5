"""Shared set-up of the MIM2 tests: the offline Smart Data Models bundle and a network guard.

The bundle lives beside the checkout (``../shared/data/smart-data-models``) and is used in
place, never copied. Its ``context.jsonld`` files are registered in the app's context
registry under the URLs the examples use, so nothing is fetched.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

SDM = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "smart-data-models"
needs_sdm = pytest.mark.skipif(not SDM.is_dir(), reason="the shared Smart Data Models bundle is not available")


def sdm_context_urls(subject: str) -> list[str]:
    return [f"https://raw.githubusercontent.com/smart-data-models/dataModel.{subject}/master/context.jsonld",
            f"https://smart-data-models.github.io/dataModel.{subject}/context.jsonld"]


def preload_contexts(registry: Any) -> None:
    """Register every bundled subject @context as a cached document (no HTTP)."""
    from urbanmim.ngsild.contexts import StoredContext
    for f in SDM.glob("*/context.jsonld"):
        doc = json.loads(f.read_text(encoding="utf-8"))["@context"]
        for url in sdm_context_urls(f.parent.name):
            registry.documents[url] = StoredContext(id=url.rsplit("/", 3)[-3], url=url, kind="Cached",
                                                    document=doc, created_at="")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access attempted: {address!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
async def models_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> Any:
    """An app whose Smart Data Models schema directory is the bundle, with its contexts preloaded."""
    from urbanmim.app import create_app
    from urbanmim.settings import Settings
    monkeypatch.setenv("URBANMIM_SDM_SCHEMAS", str(SDM))
    application = create_app(Settings(db=str(tmp_path / "models.db"), sqlite_synchronous="NORMAL"))
    preload_contexts(application.state.contexts)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def models_client(models_app: Any) -> Any:
    import httpx
    transport = httpx.ASGITransport(app=models_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
