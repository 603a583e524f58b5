"""HTML pages of the OGC API (conformance class ``html``), rendered from the JSON bodies.

Why from the JSON bodies: a page and its ``f=json`` twin can then never disagree, and every
handler builds one document. The pages are deliberately plain -- no script, no external
style or font -- and accessible: a ``lang`` attribute, one ``h1`` per page, a breadcrumb
``nav``, data tables with a ``caption`` and ``th scope``, links whose text says where they go.
Every value is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

import orjson

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:1rem auto;padding:0 1rem;line-height:1.5;"
          "color:#1a1a1a;background:#fff}table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
          "th,td{border:1px solid #767676;padding:.25rem .5rem;text-align:left;vertical-align:top}"
          "caption{font-weight:bold;text-align:left;padding:.25rem 0}a{color:#0645ad}"
          "nav ol{list-style:none;padding:0;margin:0}nav li{display:inline}"
          "nav li+li::before{content:' / ';padding:0 .25rem}code{word-break:break-all}"
          ":focus{outline:3px solid #ffbf47}")
MAX_COLUMNS = 12


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _link(href: str, text: str, rel: str | None = None) -> str:
    r = f' rel="{_e(rel)}"' if rel else ""
    return f'<a href="{_e(href)}"{r}>{_e(text)}</a>'


def _href(links: list[dict[str, Any]], rel: str, mtype: str | None = None) -> str | None:
    for lk in links:
        if lk.get("rel") == rel and (mtype is None or lk.get("type") == mtype):
            return str(lk["href"])
    return None


def _with_f(href: str, f: str) -> str:
    base, _, query = href.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("f=")]
    params.append(f"f={f}")
    return base + "?" + "&".join(params)


def page(title: str, body: str, crumbs: list[tuple[str, str]], json_href: str | None = None) -> str:
    """A whole document: breadcrumb trail (``(href, text)``; the last is the current page)."""
    items = [f"<li>{_link(h, t)}</li>" for h, t in crumbs[:-1]]
    if crumbs:
        items.append(f'<li aria-current="page">{_e(crumbs[-1][1])}</li>')
    alt = (f'<link rel="alternate" type="application/json" href="{_e(json_href)}">' if json_href else "")
    json_link = f'<p>{_link(json_href, "This page as JSON", "alternate")}</p>' if json_href else ""
    return ("<!doctype html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{_e(title)}</title>{alt}'
            f"<style>{_STYLE}</style></head><body>"
            f'<nav aria-label="Breadcrumb"><ol>{"".join(items)}</ol></nav>'
            f"<main><h1>{_e(title)}</h1>{body}{json_link}</main></body></html>")


def _table(caption: str, head: list[str], rows: list[list[str]]) -> str:
    """``rows`` cells are already HTML; the first cell of each row is a row header."""
    th = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    trs = []
    for r in rows:
        cells = f'<th scope="row">{r[0]}</th>' + "".join(f"<td>{c}</td>" for c in r[1:])
        trs.append(f"<tr>{cells}</tr>")
    return (f"<table><caption>{_e(caption)}</caption><thead><tr>{th}</tr></thead>"
            f"<tbody>{''.join(trs)}</tbody></table>")


def _value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return _e(v)
    return f"<code>{_e(orjson.dumps(v).decode())}</code>"


def index(body: dict[str, Any], root: str) -> str:
    rows = [[_link(_with_f(c["href"], "html"), c["title"]), _e(c["tenant"] or "(none)")] for c in body["cities"]]
    text = (f"<p>{_e(body['description'])}</p>"
            + _table("Cities (tenants) published as OGC API Features", ["City", "NGSILD-Tenant"], rows))
    return page(body["title"], text, [(root, "OGC API")], _with_f(root, "json"))


def landing(body: dict[str, Any], root: str) -> str:
    links = body["links"]
    items = [("data", "The collections (one per entity type)"), ("conformance", "Conformance classes"),
             ("service-desc", "The API definition (OpenAPI 3.0, JSON)"),
             ("service-doc", "The API definition (HTML)")]
    lis = "".join(f"<li>{_link(h, t)}</li>" for rel, t in items if (h := _href(links, rel)))
    text = f"<p>{_e(body['description'])}</p><ul>{lis}</ul>"
    self_ = _href(links, "self") or root
    return page(body["title"], text, [(root, "OGC API"), (self_, body["title"])], _with_f(self_, "json"))


def conformance(body: dict[str, Any], root: str, city: str, city_title: str) -> str:
    lis = "".join(f"<li><code>{_e(c)}</code></li>" for c in body["conformsTo"])
    return page(f"Conformance of {city_title}", f"<ul>{lis}</ul>",
                [(root, "OGC API"), (city, city_title), ("", "Conformance")], _with_f(city + "/conformance", "json"))


def _extent_text(ext: dict[str, Any] | None) -> tuple[str, str]:
    if not ext:
        return "", ""
    sp = ext.get("spatial", {}).get("bbox") or []
    tm = ext.get("temporal", {}).get("interval") or []
    box = ", ".join(f"{v:.5f}" for v in sp[0]) if sp else ""
    period = " to ".join(str(v) for v in tm[0] if v) if tm else ""
    return box, period


def collections(body: dict[str, Any], root: str, city: str, city_title: str) -> str:
    rows = []
    for c in body["collections"]:
        href = _href(c["links"], "self") or ""
        box, period = _extent_text(c.get("extent"))
        items = _href(c["links"], "items") or ""
        rows.append([_link(_with_f(href, "html"), c["title"]), _e(c.get("description", "")), _e(box), _e(period),
                     _link(_with_f(items, "html"), f"Features of {c['title']}")])
    text = _table(f"Collections of {city_title}", ["Collection", "Description", "Bounding box (CRS84)",
                                                     "Time extent", "Features"], rows)
    return page(f"Collections of {city_title}", text, [(root, "OGC API"), (city, city_title), ("", "Collections")],
                _with_f(city + "/collections", "json"))


def collection(body: dict[str, Any], root: str, city: str, city_title: str) -> str:
    links = body["links"]
    box, period = _extent_text(body.get("extent"))
    rows = [[_e("Identifier"), f"<code>{_e(body['id'])}</code>"], [_e("Description"), _e(body.get("description", ""))],
            [_e("Bounding box (CRS84)"), _e(box)], [_e("Time extent"), _e(period)],
            [_e("Coordinate reference system"), f"<code>{_e(body['crs'][0])}</code>"]]
    text = _table("About this collection", ["Field", "Value"], rows)
    lis = []
    for rel, t in (("items", f"Features of {body['title']}"), ("http://www.opengis.net/def/rel/ogc/1.0/queryables",
                                                                  "Queryables (properties a filter can use)")):
        h = _href(links, rel)
        if h:
            lis.append(f"<li>{_link(_with_f(h, 'html'), t)}</li>")
    text += f"<ul>{''.join(lis)}</ul>"
    self_ = _href(links, "self") or ""
    return page(body["title"], text, [(root, "OGC API"), (city, city_title), (city + "/collections", "Collections"),
                                      ("", body["title"])], _with_f(self_, "json"))


def items(body: dict[str, Any], root: str, city: str, city_title: str, title: str, coll_href: str) -> str:
    feats = body["features"]
    cols: list[str] = []
    for f in feats:
        for k in f["properties"]:
            if k not in cols and len(cols) < MAX_COLUMNS:
                cols.append(k)
    rows = []
    for f in feats:
        href = _href(f.get("links", []), "self") or ""
        geom = f.get("geometry") or {}
        rows.append([_link(_with_f(href, "html"), f["id"]), _e(geom.get("type", ""))]
                    + [_value(f["properties"].get(k)) for k in cols])
    first = body.get("_offset", 0) + 1
    matched = body.get("numberMatched")
    of = f" of {matched}" if matched is not None else ""
    caption = (f"Features {first} to {first + len(feats) - 1}{of} in {title}" if feats else f"No features in {title}")
    text = _table(caption, ["Feature", "Geometry", *cols], rows)
    nav = []
    for rel, t in (("prev", "Previous page"), ("next", "Next page")):
        h = _href(body["links"], rel, "application/geo+json")
        if h:
            nav.append(_link(_with_f(h, "html"), t, rel))
    if nav:
        text += f'<nav aria-label="Pages"><p>{" &middot; ".join(nav)}</p></nav>'
    self_ = _href(body["links"], "self") or ""
    return page(f"Features of {title}", text, [(root, "OGC API"), (city, city_title),
                                                (city + "/collections", "Collections"), (coll_href, title),
                                                ("", "Features")], _with_f(self_, "json"))


def item(body: dict[str, Any], root: str, city: str, city_title: str, title: str, coll_href: str) -> str:
    rows = [[_e(k), _value(v)] for k, v in body["properties"].items()]
    geom = body.get("geometry")
    rows.insert(0, [_e("geometry"), _value(geom)])
    text = _table(f"Properties of {body['id']}", ["Property", "Value"], rows)
    self_ = _href(body["links"], "self") or ""
    return page(str(body["id"]), text, [(root, "OGC API"), (city, city_title), (city + "/collections", "Collections"),
                                        (coll_href, title), (coll_href + "/items", "Features"), ("", str(body["id"]))],
                _with_f(self_, "json"))


def queryables(body: dict[str, Any], root: str, city: str, city_title: str, title: str, coll_href: str) -> str:
    rows = []
    for name, schema in body["properties"].items():
        kind = schema.get("type") or schema.get("format") or ("geometry" if "$ref" in schema else "")
        if isinstance(kind, list):
            kind = " or ".join(kind)
        rows.append([f"<code>{_e(name)}</code>", _e(kind), f"<code>{_e(schema.get('x-ngsi-ld-iri', ''))}</code>"])
    text = _table(f"Queryables of {title}", ["Name", "Type", "NGSI-LD attribute"], rows)
    text += ("<p>Use them in <code>filter</code> (CQL2-text), e.g. "
             "<code>filter=name LIKE 'A%' AND S_INTERSECTS(geometry, POLYGON((...)))</code>.</p>")
    return page(f"Queryables of {title}", text, [(root, "OGC API"), (city, city_title),
                                                  (city + "/collections", "Collections"), (coll_href, title),
                                                  ("", "Queryables")], _with_f(coll_href + "/queryables", "json"))


def api(doc: dict[str, Any], root: str, city: str, city_title: str) -> str:
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p.get("name", p.get("$ref", "").rsplit("/", 1)[-1]) for p in op.get("parameters", []))
            rows.append([f"<code>{_e(method.upper())} {_e(path)}</code>", _e(op.get("summary", "")), _e(params)])
    text = (f"<p>{_e(doc['info']['description'])}</p>"
            + _table("Operations", ["Operation", "Summary", "Parameters"], rows))
    return page(f"API of {city_title}", text, [(root, "OGC API"), (city, city_title), ("", "API")],
                _with_f(city + "/api", "json"))
