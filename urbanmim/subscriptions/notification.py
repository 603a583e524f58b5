"""Outbox payload → the Notification a receiver gets (clause 5.3.1), per endpoint.accept.

Rendering happens at delivery, not in the writer: the writer only stores the internal
entity (cheap), and the representation (format, attributes / pick / omit, sysAttrs, lang,
@context) is applied here with the shared :mod:`urbanmim.ngsild.render` code, exactly as a
GET would show it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.core_context import CORE_CONTEXT_URL
from urbanmim.ngsild.linked import fetch_linked, render_flat
from urbanmim.ngsild.render import View, apply_projection, feature_collection, render_entity, render_feature
from urbanmim.store.base import Store
from urbanmim.subscriptions.matching import Compiled

LINK_REL = "http://www.w3.org/ns/json-ld#context"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def view_of(sub: Compiled) -> View:
    n = sub.doc["notification"]
    fmt = n.get("format") or "normalized"
    view = View(sub.ctx, fmt="keyValues" if fmt in ("keyValues", "simplified") else fmt,
                sys_attrs=bool(n.get("sysAttrs")), lang=n.get("lang") or sub.doc.get("lang"))
    if n.get("attributes"):
        view.attrs = set(n["attributes"])
    if n.get("pick") or n.get("omit"):
        apply_projection(view, {k: None for k in n["pick"]} if n.get("pick") else None,
                         {k: None for k in n["omit"]} if n.get("omit") else None)
    if sub.doc.get("datasetId"):
        view.dataset_ids = frozenset(sub.doc["datasetId"])
    return view


def _render_one(ent: dict[str, Any], view: View, ctx: TermMap) -> dict[str, Any]:
    out = render_entity(ent, view)
    if view.sys_attrs:   # entity-level system attributes, in every format (keyValues too)
        for k in ("createdAt", "modifiedAt"):
            if ent.get(k):
                out[k] = ent[k]
    if "deletedAt" in ent:
        out["deletedAt"] = ent["deletedAt"]
    for attr in out.values():   # previousVocab holds IRIs like vocab does
        for inst in attr if isinstance(attr, list) else [attr]:
            if isinstance(inst, dict) and isinstance(inst.get("previousVocab"), str | list):
                pv = inst["previousVocab"]
                inst["previousVocab"] = [ctx.compact(x) for x in pv] if isinstance(pv, list) else ctx.compact(pv)
    return out


def context_url(sub: Compiled) -> str:
    """The @context to announce: jsonldContext, else the URL the subscriber's own @context named."""
    url = sub.doc.get("jsonldContext")
    if isinstance(url, str) and not sub.doc.get("_implicitContext"):
        return url
    ctx = sub.doc.get("_ctx")
    if isinstance(ctx, str):
        return ctx
    if isinstance(ctx, list) and ctx and all(isinstance(c, str) for c in ctx):
        return str(ctx[0])
    return url if isinstance(url, str) else CORE_CONTEXT_URL


def notification_id(payloads: list[dict[str, Any]]) -> str:
    """Stable across retries and restarts: the first row's id, plus the batch size when batched.

    A batch re-formed differently after a crash gets another id, so a receiver that
    de-duplicates by id may see a row twice but never drops one."""
    first = str(payloads[0]["nid"])
    return first if len(payloads) == 1 else f"{first}-{len(payloads)}"


async def build(sub: Compiled, payloads: list[dict[str, Any]], store: Store) -> dict[str, Any]:
    """The Notification data type for consecutive outbox payloads of one subscription.

    ``join`` (inline / flat) follows Relationships at delivery time, as a GET would."""
    view = view_of(sub)
    n = sub.doc["notification"]
    accept = n["endpoint"].get("accept", "application/json")
    entities = [e for p in payloads for e in p["entities"]]
    extra: list[Any] = []
    if n.get("join") in ("inline", "flat"):
        view.join, view.join_level = n["join"], int(n.get("joinLevel") or 1)
        extra = await fetch_linked(store, sub.tenant, [e for e in entities if "deletedAt" not in e], view)
    if accept == "application/geo+json":
        data: Any = feature_collection([render_feature(e, view) for e in entities])
    else:
        data = [_render_one(e, view, sub.ctx) for e in entities]
        if view.join == "flat" and extra:
            data = render_flat(data, extra)
        if accept == "application/ld+json":
            for d in data:
                d["@context"] = context_url(sub)
    body: dict[str, Any] = {"id": notification_id(payloads), "type": "Notification", "subscriptionId": sub.id,
                            "notifiedAt": now_iso(), "data": data}
    reasons = {p.get("reason") for p in payloads}
    if len(reasons) == 1 and payloads[0].get("reason"):
        body["triggerReason"] = payloads[0]["reason"]
    if accept == "application/ld+json":
        body["@context"] = context_url(sub)
    return body


def headers(sub: Compiled) -> dict[str, str]:
    """HTTP headers (also the MQTT ``metadata``): Content-Type, Link, tenant, receiverInfo."""
    ep = sub.doc["notification"]["endpoint"]
    accept = ep.get("accept", "application/json")
    h = {"Content-Type": accept}
    if accept != "application/ld+json":
        h["Link"] = f'<{context_url(sub)}>; rel="{LINK_REL}"; type="application/ld+json"'
    if sub.tenant:
        h["NGSILD-Tenant"] = sub.tenant
    for kv in ep.get("receiverInfo") or []:
        h[kv["key"]] = kv["value"]
    return h


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
