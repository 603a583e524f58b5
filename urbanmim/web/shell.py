"""The web shell: one layout, one navigation, one set of catalogues for every page of the platform.

Pages are server-rendered (Jinja2, autoescaped) so they work without JavaScript and a screen
reader gets real HTML; a page that needs a script (the twin) gets its catalogue keys embedded
as JSON and loads ``/web/static/i18n.js`` to read them. A component adds a page with three
calls in its ``install`` hook (see ``docs/web.md``)::

    web = web_of(app)
    web.add_templates(HERE / "templates")          # its own templates folder, e.g. kpi/index.html
    web.add_catalogues(HERE / "locales")           # en.json, fr.json, de.json, es.json
    app.router.routes.insert(0, Route("/kpi", page))   # the handler calls web.render(request, ...)

The four main sections of the nav are declared here (their pages are added by their
components); :meth:`Web.add_nav` adds more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from urbanmim.web.i18n import COOKIE, Catalogues

HERE = Path(__file__).resolve().parent
STATIC_PREFIX = "/web/static"
COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True)
class NavEntry:
    key: str            # a catalogue key (the link text)
    href: str
    order: int = 100
    section: str = ""   # what a page passes as ``section`` to be marked aria-current


DEFAULT_NAV = (
    NavEntry("nav.twin", "/twin/", 10, "twin"),
    NavEntry("nav.kpis", "/kpi/", 20, "kpi"),
    NavEntry("nav.algorithms", "/algorithms/", 30, "algorithms"),
    NavEntry("nav.ogc", "/ogc/", 40, "ogc"),
)


def _json_script(value: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element (no ``</script>`` break-out)."""
    text = orjson.dumps(value).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


class Web:
    """Templates, catalogues and nav of the app (one per app, on ``app.state.web``)."""

    def __init__(self) -> None:
        self.catalogues = Catalogues()
        self.catalogues.add_dir(HERE / "locales")
        self.template_dirs: list[Path] = [HERE / "templates"]
        self.nav: dict[str, NavEntry] = {e.section: e for e in DEFAULT_NAV}
        self._env: Environment | None = None

    # ---- what components add -------------------------------------------------------------------
    def add_templates(self, folder: Path | str) -> None:
        folder = Path(folder)
        if folder not in self.template_dirs:
            self.template_dirs.insert(0, folder)
            self._env = None

    def add_catalogues(self, folder: Path | str) -> None:
        self.catalogues.add_dir(folder)

    def add_nav(self, section: str, key: str, href: str, order: int = 100) -> None:
        """Add (or replace) a nav entry; ``section`` is what the page passes to be marked current."""
        self.nav[section] = NavEntry(key, href, order, section)

    # ---- rendering -----------------------------------------------------------------------------
    @property
    def env(self) -> Environment:
        if self._env is None:
            env = Environment(loader=ChoiceLoader([FileSystemLoader(str(d)) for d in self.template_dirs]),
                              autoescape=select_autoescape(["html", "xml"], default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True, auto_reload=False)
            env.filters["json_script"] = _json_script
            self._env = env
        return self._env

    def language(self, request: Request) -> str:
        return self.catalogues.negotiate(request.query_params.get("lang"), request.cookies.get(COOKIE),
                                         request.headers.get("accept-language"))

    def context(self, request: Request, lang: str, section: str = "",
                js_prefixes: Iterable[str] = ()) -> dict[str, Any]:
        """What every template sees: ``t``, ``lang``, the nav, the language switcher, static URLs."""
        cat = self.catalogues

        def t(key: str, /, **params: Any) -> str:
            return cat.t(lang, key, **params)

        def lang_href(code: str) -> str:
            params = dict(request.query_params)
            params["lang"] = code
            return request.url.path + "?" + urlencode(params)

        return {
            "request": request, "lang": lang, "t": t, "section": section, "static": STATIC_PREFIX,
            "nav": sorted(self.nav.values(), key=lambda e: (e.order, e.href)),
            "languages": [(code, name, lang_href(code)) for code, name in cat.languages.items()],
            "messages": cat.subset(lang, ("common.", *js_prefixes)),
        }

    def render(self, request: Request, template: str, values: Mapping[str, Any] | None = None, *,
               section: str = "", js_prefixes: Iterable[str] = (), status: int = 200) -> HTMLResponse:
        """Render ``template`` in the request's language; remember an explicit ``?lang=`` in a cookie."""
        lang = self.language(request)
        ctx = self.context(request, lang, section, js_prefixes)
        ctx.update(values or {})
        html = self.env.get_template(template).render(ctx)
        resp = HTMLResponse(html, status_code=status)
        resp.headers["Content-Language"] = lang
        resp.headers["Vary"] = "Accept-Language, Cookie"
        resp.headers["Cache-Control"] = "no-cache"
        query_lang = request.query_params.get("lang")
        if query_lang and query_lang in self.catalogues.languages and request.cookies.get(COOKIE) != query_lang:
            resp.set_cookie(COOKIE, query_lang, max_age=COOKIE_MAX_AGE, samesite="lax", path="/")
        return resp


def web_of(app: Any) -> Web:
    """The app's web shell, created on first use (so any component's ``install`` may call it)."""
    web = getattr(app.state, "web", None)
    if web is None:
        web = Web()
        app.state.web = web
    return web
