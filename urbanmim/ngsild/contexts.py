"""JSON-LD @context handling: resolve once, then expand/compact terms with plain dict look-ups.

Why not run full JSON-LD expansion/compaction (PyLD) on every payload: it costs
milliseconds per entity, and NGSI-LD only needs *term* expansion (attribute names,
types, vocab values). So a context is processed **once** per distinct context — by
PyLD, which handles prefixes, @vocab, nested and remote contexts correctly — into a
:class:`TermMap` (term → IRI and IRI → term dicts); every request after that is two
dict look-ups per term.

The ETSI core context is built in (``core_context.py``), always applies last and is
protected: a user context cannot redefine a core term. Remote contexts are fetched
with a short timeout, off the event loop, and cached (they appear as ``Cached`` in the
``/jsonldContexts`` API); contexts created through that API are ``Hosted`` and are
resolved locally, never over HTTP.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from pyld import jsonld

from urbanmim.errors import BadRequestData, LdContextNotAvailable, NgsiError
from urbanmim.ngsild.core_context import CORE_CONTEXT, CORE_CONTEXT_URL
from urbanmim.ngsild.entity import DEFAULT_VOCAB

CORE_URL_PREFIXES = ("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context", "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"


def is_core_url(url: str) -> bool:
    return url.startswith(CORE_URL_PREFIXES) and url.endswith(".jsonld")


def _core_terms() -> tuple[dict[str, str], dict[str, str]]:
    prefixes = {k: v for k, v in CORE_CONTEXT.items() if isinstance(v, str) and not k.startswith("@")
                and v.endswith(("/", "#"))}

    def iri(v: str) -> str:
        if ":" in v:
            p, s = v.split(":", 1)
            if p in prefixes:
                return prefixes[p] + s
        return v

    terms: dict[str, str] = {}
    for k, v in CORE_CONTEXT.items():
        if k.startswith("@"):
            continue
        target = v if isinstance(v, str) else v.get("@id") if isinstance(v, dict) else None
        if target:
            terms[k] = iri(target)
    return terms, prefixes


CORE_TERMS, CORE_PREFIXES = _core_terms()


@dataclass
class TermMap:
    """An active context reduced to what NGSI-LD needs: term ↔ IRI tables and @vocab."""

    terms: dict[str, str]
    vocab: str = DEFAULT_VOCAB
    prefixes: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)      # the context as the client referenced it (for output)
    inline: Any = None                                  # the @context value as sent (for ld+json output)
    reverse: dict[str, str] = field(default_factory=dict)
    sources: list[StoredContext] = field(default_factory=list)  # hosted/cached documents it was built from
    _ecache: dict[str, str] = field(default_factory=dict)
    _ccache: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rev: dict[str, str] = {}
        for term, iri in self.terms.items():
            if iri not in rev or len(term) < len(rev[iri]):
                rev[iri] = term
        # core terms win when both define the same IRI (keeps "location" etc. stable)
        for term, iri in CORE_TERMS.items():
            if self.terms.get(term) == iri:
                rev[iri] = term
        self.reverse = rev

    def expand(self, term: str) -> str:
        """Compact term (as a client wrote it) → IRI."""
        hit = self._ecache.get(term)
        if hit is not None:
            return hit
        iri = self.terms.get(term)
        if iri is None:
            if ":" in term:
                prefix, suffix = term.split(":", 1)
                ns = self.prefixes.get(prefix)
                iri = ns + suffix if ns is not None and not suffix.startswith("//") else term
            else:
                iri = self.vocab + term
        if len(self._ecache) < 50_000:
            self._ecache[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        """IRI → the shortest term the caller's context knows it by."""
        hit = self._ccache.get(iri)
        if hit is not None:
            return hit
        term = self.reverse.get(iri)
        if term is None:
            rest = iri[len(self.vocab):] if iri.startswith(self.vocab) and len(iri) > len(self.vocab) else None
            if rest is not None and rest not in self.terms:
                term = rest
            else:
                # the short name means something else in this context: use a compact IRI instead
                term = iri
                for prefix, ns in self.prefixes.items():
                    if iri.startswith(ns) and len(iri) > len(ns):
                        cand = f"{prefix}:{iri[len(ns):]}"
                        if len(cand) < len(term):
                            term = cand
        if len(self._ccache) < 50_000:
            self._ccache[iri] = term
        return term

    @property
    def context_value(self) -> Any:
        """What to put in an ld+json response's @context."""
        if self.inline is not None:
            return self.inline
        if not self.urls:
            return CORE_CONTEXT_URL
        return self.urls[0] if len(self.urls) == 1 else list(self.urls)

    @property
    def link_url(self) -> str:
        """The context URL for a JSON response's Link header."""
        return self.urls[0] if self.urls else CORE_CONTEXT_URL


CORE = TermMap(dict(CORE_TERMS), prefixes=dict(CORE_PREFIXES))


@dataclass
class StoredContext:
    """A context the broker knows: Hosted (created via the API) or Cached (fetched)."""

    id: str
    url: str
    kind: str                 # Hosted | Cached | ImplicitlyCreated
    document: Any             # the @context value
    created_at: str
    last_used_at: str | None = None
    uses: int = 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ContextRegistry:
    """Resolves @context values to TermMaps; holds hosted and cached context documents.

    ``fetch`` is injectable so tests can use a local HTTP server and so the timeout is
    one setting. Resolution of an unseen context may block (HTTP), so the async API
    runs it in a worker thread; a seen context is a dict hit.
    """

    def __init__(self, *, timeout: float = 5.0, max_cached: int = 2000,
                 fetch: Callable[[str], Any] | None = None):
        self.timeout = timeout
        self.max_cached = max_cached
        self._fetch = fetch or self._http_fetch
        self._maps: OrderedDict[bytes, TermMap] = OrderedDict()
        self.documents: dict[str, StoredContext] = {}     # url -> stored context
        self._lock = threading.RLock()
        self.base_url = "http://localhost:1026"

    # ---- fetching -------------------------------------------------------------------------
    def _http_fetch(self, url: str) -> Any:
        """GET a remote @context document (clause 5.5.6).

        Could not be retrieved (network error, timeout, non-2xx) → 503 LdContextNotAvailable;
        retrieved but not JSON → 400 BadRequestData: the context exists, it is just invalid.
        """
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                r = client.get(url, headers={"Accept": "application/ld+json, application/json"})
        except httpx.HTTPError as e:
            raise LdContextNotAvailable(f"@context {url} could not be retrieved: {type(e).__name__}") from None
        if not 200 <= r.status_code < 300:
            raise LdContextNotAvailable(f"@context {url} could not be retrieved: HTTP {r.status_code}")
        try:
            return orjson.loads(r.content)
        except orjson.JSONDecodeError:
            raise BadRequestData(f"@context {url} is not a JSON document") from None

    def hosted_id(self, url: str) -> str | None:
        i = url.find(HOSTED_PATH)
        if i >= 0:
            cid = url[i + len(HOSTED_PATH):]
            if cid in self.documents or any(c.id == cid for c in self.documents.values()):
                return cid
        return None

    def stored(self, url: str) -> StoredContext | None:
        """The hosted or cached context a URL names (a hosted one under any host/base), if any."""
        with self._lock:
            found = self.documents.get(url)
            if found is None:
                cid = self.hosted_id(url)
                if cid is not None:
                    found = next((c for c in self.documents.values() if c.id == cid), None)
            return found

    def load_document(self, url: str) -> Any:
        """The @context value behind a URL: core → {}, hosted/cached → stored, else fetched once.

        Hits are not counted here: a term map is built once and reused, so usage is
        counted per request in :meth:`resolve`.
        """
        if is_core_url(url):
            return {}
        known = self.stored(url)
        if known is not None:
            return known.document
        doc = self._fetch(url)
        if not isinstance(doc, dict) or "@context" not in doc:
            raise BadRequestData(f"{url} does not hold a JSON-LD @context (no @context member)")
        value = doc["@context"]
        with self._lock:
            self.documents[url] = StoredContext(id=hashlib.sha1(url.encode()).hexdigest()[:16], url=url,
                                                kind="Cached", document=value, created_at=_now())
        return value

    # ---- resolution -----------------------------------------------------------------------
    def _pyld_loader(self, url: str, options: Any = None) -> dict[str, Any]:
        return {"contextUrl": None, "documentUrl": url, "document": {"@context": self.load_document(url)}}

    def _build(self, value: Any) -> TermMap:
        items = value if isinstance(value, list) else [value]
        urls = [v for v in items if isinstance(v, str)]
        for v in items:
            if not isinstance(v, (str, dict)):
                raise BadRequestData("@context entries must be URLs (strings) or objects")
        user = [v for v in items if not (isinstance(v, str) and is_core_url(v))]
        if not user:
            return TermMap(dict(CORE_TERMS), prefixes=dict(CORE_PREFIXES), urls=urls, inline=value)
        proc = jsonld.JsonLdProcessor()
        options = {"documentLoader": self._pyld_loader, "base": "", "processingMode": "json-ld-1.1",
                   "contextResolver": jsonld.ContextResolver({}, self._pyld_loader)}
        try:
            active = proc.process_context(proc._get_initial_context(options), user, options)
        except NgsiError:
            raise
        except jsonld.JsonLdError as e:
            # PyLD wraps what the document loader raised: keep our own error (503 vs 400)
            cause: BaseException | None = e
            while cause is not None:
                if isinstance(cause, NgsiError):
                    raise cause from None
                cause = getattr(cause, "cause", None) or cause.__cause__
            code = getattr(e, "code", "") or ""
            if "loading" in str(code):
                raise LdContextNotAvailable(f"@context could not be loaded: {code}") from None
            raise BadRequestData(f"invalid @context: {code or e}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise BadRequestData(f"invalid @context: {e}") from None
        terms: dict[str, str] = {}
        prefixes = dict(CORE_PREFIXES)
        for term, m in active.get("mappings", {}).items():
            if not m or term.startswith("@"):
                continue
            iri = m.get("@id")
            if isinstance(iri, str) and not iri.startswith("@"):
                terms[term] = iri
                if m.get("_prefix") or iri.endswith(("/", "#", ":")):
                    prefixes[term] = iri
        terms.update(CORE_TERMS)          # the core context is protected and applies last
        vocab = active.get("@vocab") or DEFAULT_VOCAB
        return TermMap(terms, vocab=vocab, prefixes=prefixes, urls=urls, inline=value)

    def cached(self, value: Any) -> TermMap | None:
        key = orjson.dumps(value)
        with self._lock:
            tm = self._maps.get(key)
            if tm is not None:
                self._maps.move_to_end(key)
            return tm

    def resolve_sync(self, value: Any) -> TermMap:
        """Resolve a @context value (URL, object or list of them) to a TermMap (may fetch)."""
        if value is None:
            return CORE
        key = orjson.dumps(value)
        with self._lock:
            tm = self._maps.get(key)
            if tm is not None:
                self._maps.move_to_end(key)
                return tm
        tm = self._build(value)
        tm.sources = [c for c in (self.stored(u) for u in tm.urls if not is_core_url(u)) if c is not None]
        with self._lock:
            self._maps[key] = tm
            while len(self._maps) > self.max_cached:
                self._maps.popitem(last=False)
        return tm

    async def resolve(self, value: Any) -> TermMap:
        """Like :meth:`resolve_sync`, off the event loop when it has to fetch; counts a hit per use."""
        if value is None:
            return CORE
        tm = self.cached(value)
        if tm is None:
            import anyio.to_thread
            tm = await anyio.to_thread.run_sync(self.resolve_sync, value)
        if tm.sources:
            now = _now()
            for c in tm.sources:
                c.uses += 1
                c.last_used_at = now
        return tm

    def forget(self, url: str) -> None:
        """Drop every cached term map built from ``url`` (after a hosted/cached context changes)."""
        with self._lock:
            for key in [k for k, tm in self._maps.items()
                        if url in tm.urls or any(c.url == url for c in tm.sources)]:
                del self._maps[key]
