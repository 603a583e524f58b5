"""The web shell: catalogues complete in every shipped language, language negotiation, the layout."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from urbanmim.web.i18n import Catalogues, parse_accept_language, plural_category
from urbanmim.web.shell import Web

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIRS = sorted(p for p in (ROOT / "urbanmim").glob("**/locales") if (p / "en.json").exists())
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize("folder", LOCALE_DIRS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_language_has_every_key_with_the_same_placeholders(folder: Path) -> None:
    cat = Catalogues()
    cat.add_dir(folder)
    en = cat.messages["en"]
    assert en, f"{folder}: empty English catalogue"
    for lang in cat.languages:
        if lang == "en":
            continue
        assert not cat.missing(lang), f"{folder}/{lang}.json misses {cat.missing(lang)}"
        for key, text in cat.messages[lang].items():
            assert key in en, f"{folder}/{lang}.json has {key}, which English lacks"
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(en[key])), (lang, key)


def test_translate_placeholders_plurals_and_fallbacks() -> None:
    cat = Catalogues()
    cat.add("en", {"a.count.one": "{count} thing", "a.count.other": "{count} things", "a.hi": "Hi {name}",
                   "a.only": "English only"})
    cat.add("fr", {"a.count.one": "{count} chose", "a.count.other": "{count} choses", "a.hi": "Salut {name}"})
    assert cat.t("en", "a.count", count=1) == "1 thing"
    assert cat.t("en", "a.count", count=0) == "0 things"
    assert cat.t("fr", "a.count", count=0) == "0 chose"          # French: 0 and 1 are singular
    assert cat.t("fr", "a.count", count=2) == "2 choses"
    assert cat.t("fr", "a.hi", name="Ana") == "Salut Ana"
    assert cat.t("fr", "a.hi") == "Salut {name}"                  # a missing parameter stays visible
    assert cat.t("de", "a.only") == "English only"                # fallback to English
    assert cat.t("de", "no.such.key") == "no.such.key"
    assert plural_category("de", 1) == "one" and plural_category("de", 1.5) == "other"


def test_negotiation_order() -> None:
    cat = Catalogues()
    assert cat.negotiate("de", "fr", "es") == "de"                # ?lang= first
    assert cat.negotiate(None, "fr", "es") == "fr"                # then the cookie
    assert cat.negotiate("xx", None, "es-ES,es;q=0.9") == "es"    # unknown ?lang= ignored
    assert cat.negotiate(None, None, "it;q=1, de-AT;q=0.8, fr;q=0.9") == "fr"
    assert cat.negotiate(None, None, "it, pt") == "en"
    assert parse_accept_language("da, en-gb;q=0.8, en;q=0.7, *;q=0.1, fr;q=0") == ["da", "en-gb", "en"]


def test_json_in_pages_cannot_close_the_script_element() -> None:
    web = Web()
    out = web.env.from_string("{{ v | json_script }}").render(v={"x": "</script><b>&"})
    assert "</script>" not in out and "<b>" not in out


@pytest.fixture
async def web_client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_page_language_from_query_cookie_and_header(web_client: httpx.AsyncClient) -> None:
    r = await web_client.get("/twin/?lang=de")
    assert r.status_code == 200
    assert '<html lang="de">' in r.text and r.headers["content-language"] == "de"
    assert "urbanmim_lang=de" in r.headers["set-cookie"]
    web_client.cookies.clear()
    assert 'class="skip-link" href="#main"' in r.text and '<main id="main"' in r.text
    assert 'aria-current="page"' in r.text                         # the twin's nav entry
    r = await web_client.get("/twin/", headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8"})
    assert '<html lang="fr">' in r.text and "Jumeau numérique urbain" in r.text
    assert "set-cookie" not in r.headers                           # only an explicit choice is remembered
    web_client.cookies.set("urbanmim_lang", "es")
    r = await web_client.get("/twin/")
    assert '<html lang="es">' in r.text
    # every language link keeps the page's other parameters
    assert 'href="/twin?tenant=x&amp;lang=fr"' in (await web_client.get("/twin/?tenant=x")).text


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_static_files_and_catalogue_json(web_client: httpx.AsyncClient) -> None:
    assert (await web_client.get("/web/static/web.css")).status_code == 200
    assert (await web_client.get("/web/static/i18n.js")).status_code == 200
    r = await web_client.get("/web/i18n/fr.json")
    assert r.status_code == 200 and r.json()["nav.twin"] == "Jumeau"
    r = await web_client.get("/web/i18n/xx.json")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")


async def test_a_component_adds_a_page(tmp_path: Path) -> None:
    """What docs/web.md tells another component to do: templates + catalogue + nav entry."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from urbanmim.web import web_of

    (tmp_path / "templates" / "demo").mkdir(parents=True)
    (tmp_path / "templates" / "demo" / "page.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>{{ t("demo.title") }}</h1>'
        '<p>{{ t("demo.rows", count=rows) }}</p>{% endblock %}')
    (tmp_path / "locales").mkdir()
    (tmp_path / "locales" / "en.json").write_text('{"demo.title": "Demo", "demo.rows.one": "{count} row", '
                                                  '"demo.rows.other": "{count} rows", "nav.demo": "Demo"}')
    (tmp_path / "locales" / "de.json").write_text('{"demo.title": "Vorführung"}')

    async def page(request: Request) -> Response:
        return web_of(request.app).render(request, "demo/page.html", {"rows": 2}, section="demo",
                                          js_prefixes=("demo.",))

    app = Starlette(routes=[Route("/demo", page)])
    web = web_of(app)
    web.add_templates(tmp_path / "templates")
    web.add_catalogues(tmp_path / "locales")
    web.add_nav("demo", "nav.demo", "/demo/", order=50)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        html = (await c.get("/demo?lang=de")).text
    assert "<h1>Vorführung</h1>" in html and "<p>2 rows</p>" in html          # German, English fallback
    assert '<a href="/demo/" aria-current="page">Demo</a>' in html
    assert '"demo.title":"Vorführung"' in html                               # embedded for the page's JS
