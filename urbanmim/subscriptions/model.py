"""The Subscription data type (clause 5.2.12): parse + validate a payload, render it back.

Internal form (what the store keeps, and what the notifier will read):

* entity types, ``watchedAttributes``, ``notification.attributes`` / ``pick`` / ``omit``
  and ``geoQ.geoproperty`` are **expanded IRIs**; ``q``, ``scopeQ`` and ``csf`` are kept as
  the text the client sent (already checked to parse), with ``_ctx`` — the @context value of
  the request that last wrote the subscription — so they can be expanded again;
* ``isActive`` is only present when the client sent it; ``status`` is derived on rendering
  (expired / paused / active), never stored;
* ``notification`` carries the delivery counters (``timesSent``, ``timesFailed``,
  ``lastNotification``, ``lastSuccess``, ``lastFailure``) — read-only, ignored on input;
* ``jsonldContext`` is the URL of the context used to render notifications;
  ``createdAt`` / ``modifiedAt`` are system attributes.

Members whose name starts with ``_`` are internal and never rendered. Unknown members of
a payload are ignored (like the read-only ones, Table 5.2.12-2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from urbanmim.errors import BadRequestData, NgsiError
from urbanmim.ngsild import geo, qlang
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.params import parse_type_expression
from urbanmim.ngsild.payload import _check_iri, check_attr_name, check_datetime, is_uri
from urbanmim.security.principal import current_principal

SUBSCRIPTION = "Subscription"
TRIGGERS = ("entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated",
            "attributeDeleted")
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
FORMATS = ("normalized", "concise", "keyValues", "simplified")
ACCEPTS = ("application/json", "application/ld+json", "application/geo+json")
READ_ONLY_NOTIFICATION = ("timesSent", "timesFailed", "lastNotification", "lastFailure", "lastSuccess", "status")
COUNTERS = {"timesSent": 0, "timesFailed": 0}
_PLAIN_TYPE = re.compile(r"^[^\s,;|()]+$")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _bad(msg: str) -> BadRequestData:
    return BadRequestData(f"invalid Subscription: {msg}")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{what} must be true or false")
    return value


def _number(value: Any, what: str, *, positive: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{what} must be a number")
    if value < 0 or (positive and value == 0):
        raise _bad(f"{what} must be {'greater than 0' if positive else 'non-negative'}")
    return value


def _str_list(value: Any, what: str, *, allow_csv: bool = False) -> list[str]:
    if allow_csv and isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise _bad(f"{what} must be a non-empty array of strings")
    for v in value:
        if not isinstance(v, str) or not v:
            raise _bad(f"{what} must contain non-empty strings only")
    return list(dict.fromkeys(value))


def _attr_iris(value: Any, what: str, ctx: TermMap, *, allow_csv: bool = False) -> list[str]:
    out = []
    for name in _str_list(value, what, allow_csv=allow_csv):
        if not (":" in name and is_uri(name)):   # an absolute IRI is taken as is (no term rules)
            check_attr_name(name)
        out.append(_check_iri(ctx.expand(name), what, name))
    return out


def _check_q(text: Any, what: str, ctx: TermMap) -> str:
    text = _string(text, what)
    try:
        qlang.parse_q(text, ctx.expand)
    except NgsiError as e:
        raise _bad(f"{what} is not valid: {e.detail}") from None
    return text


def _entity_selector(raw: Any, ctx: TermMap) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("each member of entities must be an object (EntitySelector)")
    out: dict[str, Any] = {}
    if "id" in raw:
        if not is_uri(raw["id"]):
            raise _bad(f"entity id {raw['id']!r} is not a URI")
        out["id"] = raw["id"]
    if "idPattern" in raw:
        pat = _string(raw["idPattern"], "idPattern")
        try:
            re.compile(pat)
        except re.error as e:
            raise _bad(f"idPattern is not a valid regular expression: {e}") from None
        out["idPattern"] = pat
    t = raw.get("type")
    if not isinstance(t, str) or not t:
        raise _bad("each EntitySelector needs a type")
    if _PLAIN_TYPE.match(t):
        out["type"] = _check_iri(ctx.expand(t), "entity type", t)
    else:
        parse_type_expression(t, ctx)          # a type selection (4.17): kept as written, checked here
        out["type"] = t
        out["_typeExpr"] = True
    return out


def _key_values(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _bad(f"{what} must be an array of KeyValuePair")
    for kv in value:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str) or not isinstance(kv.get("value"), str) \
                or not kv["key"]:
            raise _bad(f"{what}: each KeyValuePair needs a string key and a string value")
    return [{"key": kv["key"], "value": kv["value"]} for kv in value]


def _endpoint(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("notification.endpoint must be an object with a uri")
    uri = raw.get("uri")
    if not is_uri(uri):
        raise _bad("notification.endpoint.uri is missing or not a URI")
    out: dict[str, Any] = {"uri": uri}
    accept = raw.get("accept")
    if accept is not None:
        if accept not in ACCEPTS:
            raise _bad(f"notification.endpoint.accept must be one of {', '.join(ACCEPTS)}")
        out["accept"] = accept
    for k in ("receiverInfo", "notifierInfo"):
        if raw.get(k) is not None:
            out[k] = _key_values(raw[k], f"notification.endpoint.{k}")
    return out


def _notification(raw: Any, ctx: TermMap, previous: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad("notification must be an object (NotificationParams)")
    out: dict[str, Any] = {}
    if raw.get("attributes") is not None:
        out["attributes"] = _attr_iris(raw["attributes"], "notification.attributes", ctx)
    for k in ("pick", "omit"):
        if raw.get(k) is not None:
            names = _str_list(raw[k], f"notification.{k}", allow_csv=True)
            out[k] = [n if n in ("id", "type") else _check_iri(ctx.expand(n), k, n) for n in names]
    if "attributes" in out and ("pick" in out or "omit" in out):
        raise _bad("notification.attributes cannot be combined with pick or omit")
    if "pick" in out and "omit" in out and set(out["pick"]) & set(out["omit"]):
        raise _bad("a member cannot be both picked and omitted")
    fmt = raw.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise _bad(f"notification.format must be one of normalized, concise, keyValues (got {fmt!r})")
        out["format"] = fmt
    for k in ("sysAttrs", "showChanges"):
        if raw.get(k) is not None:
            out[k] = _bool(raw[k], f"notification.{k}")
    if out.get("showChanges") and out.get("format") in ("keyValues", "simplified"):
        raise _bad("showChanges cannot be used with the keyValues format")
    if raw.get("endpoint") is None:
        raise _bad("notification.endpoint is mandatory")
    out["endpoint"] = _endpoint(raw["endpoint"])
    if raw.get("join") is not None:
        if raw["join"] not in ("flat", "inline", "@none"):
            raise _bad("notification.join must be flat, inline or @none")
        out["join"] = raw["join"]
    if raw.get("joinLevel") is not None:
        jl = raw["joinLevel"]
        if isinstance(jl, bool) or not isinstance(jl, int) or jl < 1:
            raise _bad("notification.joinLevel must be a positive integer")
        out["joinLevel"] = jl
    for k in ("lang",):
        if raw.get(k) is not None:
            out[k] = _string(raw[k], f"notification.{k}")
    # delivery status is the system's: keep what was there, never what the client says
    for k in READ_ONLY_NOTIFICATION:
        if previous and k in previous:
            out[k] = previous[k]
    for k, v in COUNTERS.items():
        out.setdefault(k, v)
    return out


def parse_members(body: dict[str, Any], ctx: TermMap, *, previous: dict[str, Any] | None = None,
                  allow_null: bool = False) -> tuple[dict[str, Any], set[str]]:
    """The members of a Subscription (or fragment) in internal form, each checked on its own.

    Returns (parsed members, members set to null — only with ``allow_null``)."""
    out: dict[str, Any] = {}
    nulls: set[str] = set()
    for k, v in body.items():
        if v is None and k != "@context":
            if not allow_null:
                raise _bad(f"{k} must not be null")
            nulls.add(k)
    get = {k: v for k, v in body.items() if v is not None}
    if "type" in get and get["type"] != SUBSCRIPTION:
        raise _bad(f"type must be {SUBSCRIPTION!r}")
    for k in ("subscriptionName", "description"):
        if k in get:
            out[k] = _string(get[k], k) if k == "subscriptionName" else get[k]
            if not isinstance(out[k], str):
                raise _bad(f"{k} must be a string")
    if "entities" in get:
        if not isinstance(get["entities"], list) or not get["entities"]:
            raise _bad("entities must be a non-empty array of EntitySelector")
        out["entities"] = [_entity_selector(e, ctx) for e in get["entities"]]
    if "watchedAttributes" in get:
        out["watchedAttributes"] = _attr_iris(get["watchedAttributes"], "watchedAttributes", ctx)
    if "notificationTrigger" in get:
        trig = _str_list(get["notificationTrigger"], "notificationTrigger")
        wrong = [t for t in trig if t not in TRIGGERS]
        if wrong:
            raise _bad(f"unknown notificationTrigger value(s): {', '.join(wrong)}")
        out["notificationTrigger"] = trig
    if "timeInterval" in get:
        out["timeInterval"] = _number(get["timeInterval"], "timeInterval", positive=True)
    if "throttling" in get:
        out["throttling"] = _number(get["throttling"], "throttling", positive=False)
    if "q" in get:
        out["q"] = _check_q(get["q"], "q", ctx)
    if "csf" in get:
        out["csf"] = _check_q(get["csf"], "csf", ctx)
    if "scopeQ" in get:
        text = _string(get["scopeQ"], "scopeQ")
        try:
            qlang.parse_scope_q(text)
        except NgsiError as e:
            raise _bad(f"scopeQ is not valid: {e.detail}") from None
        out["scopeQ"] = text
    if "geoQ" in get:
        gq = get["geoQ"]
        geo.parse_geo_q_object(gq, ctx.expand)
        g = {k: gq[k] for k in ("georel", "geometry", "coordinates") if k in gq}
        if gq.get("geoproperty"):
            g["geoproperty"] = ctx.expand(gq["geoproperty"])
        out["geoQ"] = g
    if "isActive" in get:
        out["isActive"] = _bool(get["isActive"], "isActive")
    if "expiresAt" in get:
        ts = check_datetime(get["expiresAt"], "expiresAt")
        if _parse_dt(ts) <= datetime.now(UTC):
            raise _bad("expiresAt must be in the future")
        out["expiresAt"] = ts
    if "temporalQ" in get:
        if not isinstance(get["temporalQ"], dict):
            raise _bad("temporalQ must be an object")
        out["temporalQ"] = get["temporalQ"]
    if "lang" in get:
        out["lang"] = _string(get["lang"], "lang")
    if "datasetId" in get:
        ids = _str_list(get["datasetId"], "datasetId")
        for d in ids:
            if d != "@none" and not is_uri(d):
                raise _bad(f"datasetId {d!r} is not a URI")
        out["datasetId"] = ids
    if "jsonldContext" in get:
        if not is_uri(get["jsonldContext"]):
            raise _bad("jsonldContext must be a URI")
        out["jsonldContext"] = get["jsonldContext"]
    if "notification" in get:
        prev_n = previous.get("notification") if previous else None
        out["notification"] = _notification(get["notification"], ctx, prev_n)
    return out, nulls


MANDATORY = ("notification",)


def check_whole(doc: dict[str, Any]) -> None:
    """The rules that tie members together (5.2.12, 5.8.1.4)."""
    if "notification" not in doc:
        raise _bad("notification is mandatory")
    if not doc.get("entities") and not doc.get("watchedAttributes"):
        raise _bad("entities or watchedAttributes must be present")
    if "timeInterval" in doc and "watchedAttributes" in doc:
        raise _bad("timeInterval and watchedAttributes cannot be used together")
    if "timeInterval" in doc and "throttling" in doc:
        raise _bad("timeInterval and throttling cannot be used together")


def new_subscription(body: Any, ctx: TermMap, *, sub_id: str | None, ctx_value: Any) -> dict[str, Any]:
    """A complete, validated Subscription in internal form (the id is already decided)."""
    if not isinstance(body, dict):
        raise _bad("the payload must be a JSON object")
    if body.get("type") != SUBSCRIPTION:
        raise _bad(f"type must be {SUBSCRIPTION!r}")
    members, _ = parse_members(body, ctx)
    check_whole(members)
    now = now_iso()
    doc: dict[str, Any] = {"id": sub_id, "type": SUBSCRIPTION, **members}
    doc.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
    doc["notification"].setdefault("format", "normalized")
    doc["notification"]["endpoint"].setdefault("accept", "application/json")
    doc["createdAt"] = doc["modifiedAt"] = now
    doc["_ctx"] = ctx_value
    p = current_principal()
    if not p.system:     # MIM6: notifications are filtered as their creator at delivery time
        doc["_principal"] = p.to_json()
    return doc


def merge_fragment(current: dict[str, Any], body: Any, ctx: TermMap, *, ctx_value: Any) -> dict[str, Any]:
    """``current`` updated by a Subscription fragment (5.8.2): members replaced, null removes."""
    if not isinstance(body, dict):
        raise _bad("the payload must be a JSON object")
    if "id" in body and body["id"] != current["id"]:
        raise _bad("the id of a subscription cannot be changed")
    members, nulls = parse_members({k: v for k, v in body.items() if k not in ("id", "@context")}, ctx,
                                   previous=current, allow_null=True)
    for k in nulls:
        if k in MANDATORY or k == "type":
            raise _bad(f"{k} is mandatory and cannot be removed")
    if not set(body) - {"id", "type", "@context"}:
        raise _bad("nothing to update")
    doc = dict(current)
    for k in nulls:
        doc.pop(k, None)
    members.pop("type", None)
    doc.update(members)
    check_whole(doc)
    if "notification" in members:
        doc["notification"].setdefault("format", "normalized")
        doc["notification"]["endpoint"].setdefault("accept", "application/json")
    doc["modifiedAt"] = now_iso()
    doc["_ctx"] = ctx_value if ctx_value is not None else current.get("_ctx")
    return doc


def status_of(doc: dict[str, Any]) -> str:
    exp = doc.get("expiresAt")
    if exp:
        try:
            if _parse_dt(exp) <= datetime.now(UTC):
                return "expired"
        except ValueError:
            pass
    return "paused" if doc.get("isActive") is False else "active"


def render(doc: dict[str, Any], ctx: TermMap, *, sys_attrs: bool = False) -> dict[str, Any]:
    """The Subscription as the API shows it, terms compacted with the caller's @context."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k.startswith("_") or k in ("createdAt", "modifiedAt"):
            continue
        if k == "entities":
            out[k] = [{sk: (ctx.compact(sv) if sk == "type" and not sel.get("_typeExpr") else sv)
                       for sk, sv in sel.items() if not sk.startswith("_")} for sel in v]
        elif k == "watchedAttributes":
            out[k] = [ctx.compact(a) for a in v]
        elif k == "geoQ":
            out[k] = {gk: (ctx.compact(gv) if gk == "geoproperty" else gv) for gk, gv in v.items()}
        elif k == "notification":
            n = {}
            for nk, nv in v.items():
                if nk in ("attributes", "pick", "omit"):
                    n[nk] = [ctx.compact(a) for a in nv]
                elif nk in COUNTERS and not nv:
                    continue        # nothing sent yet: the counters appear with the first notification
                else:
                    n[nk] = nv
            out[k] = n
        else:
            out[k] = v
    out["status"] = status_of(doc)
    if sys_attrs:
        out["createdAt"] = doc.get("createdAt")
        out["modifiedAt"] = doc.get("modifiedAt")
    return out
