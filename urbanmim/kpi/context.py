"""The @context of KPI values: Smart Data Models ``KeyPerformanceIndicator`` terms, offline.

KPI values are stored as SDM ``KeyPerformanceIndicator`` entities so any NGSI-LD client
that knows that model reads them without knowing urbanmim. As with the demo subjects
(:mod:`urbanmim.ingest.demo.sdm`), the platform rebuilds the part of the official subject
context it uses (``https://smartdatamodels.org/dataModel.KeyPerformanceIndicator/<term>``,
a few shared terms at ``https://smartdatamodels.org/<term>``; a test checks every term
against the official file) and hosts it as ``/ngsi-ld/v1/jsonldContexts/sdm-keyperformanceindicator``.

The provenance the model has no word for (KPI code, data-quality level, verified flag,
formula version, inputs) uses project terms that are *not* in the context, so they
expand to the NGSI-LD default vocabulary — exactly what they would expand to with the
official context.
"""

from __future__ import annotations

from typing import Any

from urbanmim.ngsild.contexts import CORE_PREFIXES, CORE_TERMS, TermMap

SUBJECT = "KeyPerformanceIndicator"
CONTEXT_ID = "sdm-keyperformanceindicator"
SDM = "https://smartdatamodels.org/"
_SHARED = frozenset({"name", "address", "areaServed", "dataProvider", "source", "alternateName", "dateCreated",
                     "dateModified", "owner", "seeAlso"})
_SPECIAL = {"description": "http://purl.org/dc/terms/description"}
# the official terms the platform writes or reads
TERMS = ("KeyPerformanceIndicator", "name", "description", "category", "organization", "process",
         "calculationFrequency", "calculationMethod", "calculationFormula", "aggregatedData", "calculationPeriod",
         "currentStanding", "kpiValue", "dateNextCalculation", "updatedAt", "area", "source", "dataProvider",
         "businessTarget", "calculatedBy", "effectiveSince")
# project terms (default vocabulary): what U4SSC provenance needs beyond the model
EXTRA = ("kpiCode", "kpiComponent", "kpiPeriod", "kpiUnit", "dimension", "subDimension", "kpiType",
         "dataQuality", "verified", "verifiedBy", "formulaId", "formulaVersion", "provenance", "evidence",
         "kpiTarget", "targetAchievement")
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def term_iri(term: str) -> str:
    if term in _SPECIAL:
        return _SPECIAL[term]
    if term in _SHARED:
        return SDM + term
    if term in TERMS:
        return f"{SDM}dataModel.{SUBJECT}/{term}"
    return DEFAULT_VOCAB + term


def context_document() -> dict[str, str]:
    """The hosted @context value (core terms left out, as in any NGSI-LD context)."""
    return dict(sorted((t, term_iri(t)) for t in TERMS if t not in CORE_TERMS))


_MAP: TermMap | None = None


def term_map() -> TermMap:
    global _MAP
    if _MAP is None:
        terms = context_document()
        terms.update(CORE_TERMS)
        _MAP = TermMap(terms, prefixes=dict(CORE_PREFIXES))
    return _MAP


KPI_TYPE = term_iri(SUBJECT)


def iri(term: str) -> str:
    return term_map().expand(term)


def hosted() -> tuple[str, dict[str, Any]]:
    return CONTEXT_ID, context_document()


async def ensure_hosted(app: Any) -> None:
    """Serve this @context locally (``Link: <.../jsonldContexts/sdm-keyperformanceindicator>``); called
    before KPI values are written, so clients can read them with short names. Idempotent."""
    import time

    from urbanmim.ngsild.contexts import HOSTED_PATH, StoredContext

    if getattr(app.state, "kpi_context_hosted", False):
        return
    cid, doc = hosted()
    url = "http://localhost" + HOSTED_PATH + cid
    reg = app.state.contexts
    known = reg.stored(url)
    if known is None or known.document != doc:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reg.documents[url] = StoredContext(id=cid, url=url, kind="Hosted", document=doc, created_at=created)
        reg.forget(url)
        await app.state.store.save_context(cid, url, doc, created)
    app.state.kpi_context_hosted = True
