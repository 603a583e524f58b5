"""Message catalogues: one mechanism for the server-side templates and the browser's JavaScript.

A catalogue is a flat JSON object per language (``locales/en.json``, ``locales/fr.json``...):
``{"nav.twin": "Twin", "twin.updates.one": "{count} update", ...}``. Each component keeps its
own ``locales/`` folder and adds it (:meth:`Catalogues.add_dir`), so a page's text lives next to
its template and no component edits another's file. Keys are namespaced by component
(``twin.``, ``kpi.``...) by convention.

Why flat JSON and not gettext: the same files are sent to the browser as they are (a page embeds
the keys it needs, see ``base.html``), so ``t()`` in Python and ``t()`` in ``static/web/i18n.js``
read the same data with the same ``{name}`` placeholders and the same plural rule (``.one`` /
``.other`` suffixes, chosen by the CLDR category: ``Intl.PluralRules`` in the browser, the small
table below on the server). English is the fallback for any missing key;
``tests/test_web.py`` fails when a language misses a key that English has.

The language of a request: ``?lang=`` (then remembered in a cookie), else the cookie, else the
best ``Accept-Language`` match, else English.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DEFAULT_LANG = "en"
COOKIE = "urbanmim_lang"
# languages offered, with their names in their own language (for the switcher)
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "de": "Deutsch", "es": "Español"}


def plural_category(lang: str, n: float) -> str:
    """CLDR cardinal category for the languages we ship (``one`` or ``other``)."""
    if lang == "fr":
        return "one" if 0 <= n < 2 else "other"
    return "one" if n == 1 else "other"


class _Fmt(string.Formatter):
    """``{name}`` placeholders; a missing one stays visible as ``{name}`` instead of raising."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str) and key not in kwargs:
            return "{" + key + "}"
        return super().get_value(key, args, kwargs)


_FMT = _Fmt()


class Catalogues:
    """Every language's messages, merged from the catalogue folders of all components."""

    def __init__(self, languages: Mapping[str, str] = LANGUAGES, default: str = DEFAULT_LANG):
        self.languages = dict(languages)
        self.default = default
        self.messages: dict[str, dict[str, str]] = {lang: {} for lang in self.languages}
        self.dirs: list[Path] = []

    def add_dir(self, folder: Path | str) -> None:
        """Load ``<lang>.json`` for every offered language from ``folder`` (a missing file is skipped)."""
        folder = Path(folder)
        if folder in self.dirs:
            return
        self.dirs.append(folder)
        for lang in self.languages:
            path = folder / f"{lang}.json"
            if path.is_file():
                self.add(lang, json.loads(path.read_text(encoding="utf-8")))

    def add(self, lang: str, messages: Mapping[str, str]) -> None:
        self.messages.setdefault(lang, {}).update(messages)

    def get(self, lang: str, key: str) -> str | None:
        return self.messages.get(lang, {}).get(key) or self.messages[self.default].get(key)

    def t(self, lang: str, key: str, /, **params: Any) -> str:
        """The message ``key`` in ``lang`` (English if missing there, the key itself if missing everywhere)."""
        if "count" in params and isinstance(params["count"], int | float):
            plural = self.get(lang, f"{key}.{plural_category(lang, params['count'])}")
            if plural is not None:
                return _FMT.format(plural, **params)
        msg = self.get(lang, key)
        if msg is None:
            return key
        return _FMT.format(msg, **params) if params else msg

    def subset(self, lang: str, prefixes: Iterable[str]) -> dict[str, str]:
        """The messages whose key starts with one of ``prefixes``, English filled in: what a page's JS needs."""
        pre = tuple(prefixes)
        out = {k: v for k, v in self.messages[self.default].items() if k.startswith(pre)}
        out.update({k: v for k, v in self.messages.get(lang, {}).items() if k.startswith(pre)})
        return out

    def missing(self, lang: str) -> list[str]:
        """Keys English has and ``lang`` lacks (the catalogue test lists them)."""
        have = self.messages.get(lang, {})
        return sorted(k for k in self.messages[self.default] if k not in have)

    # ---- choosing the language of a request ------------------------------------------------------
    def negotiate(self, query_lang: str | None, cookie: str | None, accept_language: str | None) -> str:
        for candidate in (query_lang, cookie):
            if candidate and candidate in self.languages:
                return candidate
        for tag in parse_accept_language(accept_language or ""):
            base = tag.split("-")[0]
            if tag in self.languages:
                return tag
            if base in self.languages:
                return base
        return self.default


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an ``Accept-Language`` header, best first (q=0 dropped)."""
    scored: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower()
        if not tag or tag == "*":
            continue
        q = 1.0
        for b in bits[1:]:
            name, _, val = b.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if q > 0:
            scored.append((-q, i, tag))
    return [tag for _, _, tag in sorted(scored)]
