"""The shipped KPI catalogue and the KPI @context, checked against the reference files in ../shared."""

from __future__ import annotations

import csv
import json

from tests.conftest import SHARED
from urbanmim.kpi import context, quality
from urbanmim.kpi.catalogue import FREQUENCIES, builtin, find_builtin, slug
from urbanmim.kpi.formulas import FORMULAS

U4SSC = SHARED / "data" / "kpis" / "u4ssc-kpis.csv"
KPI_CONTEXT = SHARED / "data" / "smart-data-models" / "KeyPerformanceIndicator" / "context.jsonld"


def test_catalogue_has_exactly_the_91_u4ssc_kpis_with_matching_classification() -> None:
    with U4SSC.open(encoding="utf-8") as f:
        ref = {r["code"]: r for r in csv.DictReader(f)}
    assert len(ref) == 91
    ours = {d.code: d for d in builtin() if d.source == "U4SSC"}
    assert set(ours) == set(ref)
    for code, r in ref.items():
        d = ours[code]
        assert (d.name, d.dimension, d.sub_dimension, d.category_code, d.type, d.unit) == \
            (r["name"], r["dimension"], r["sub_dimension"], r["category_code"], r["type"], r["measure"]), code


def test_every_entry_is_complete() -> None:
    for d in builtin():
        assert d.method and len(d.method) < 400, d.code        # the method, short, in our words
        assert d.category and d.direction in ("higher", "lower") and d.frequency in FREQUENCIES
        assert d.type in ("core", "advanced", "platform")
        assert find_builtin(d.code) is d and find_builtin(d.slug) is d
    platform = [d for d in builtin() if d.type == "platform"]
    assert platform and all(d.source == "urbanmim" and "Not a U4SSC indicator" in d.method for d in platform)
    assert len({slug(d.code) for d in builtin()}) == len(builtin())


def test_every_formula_belongs_to_a_catalogue_kpi() -> None:
    assert len(FORMULAS) >= 9
    for code, f in FORMULAS.items():
        assert find_builtin(code) is not None, code
        assert f.version and f.formula
        alg = f.algorithm()
        assert alg.kind == "kpi" and alg.id == f.id and alg.version == f.version


def test_kpi_context_terms_are_the_official_ones() -> None:
    official = json.loads(KPI_CONTEXT.read_text())["@context"]
    ours = context.context_document()
    for term, iri in ours.items():
        assert official.get(term) == iri, term
    assert context.KPI_TYPE == official["KeyPerformanceIndicator"]
    # project terms stay out of the hosted document: they expand to the default vocabulary
    for term in context.EXTRA:
        assert term not in ours and term not in official
        assert context.iri(term) == "https://uri.etsi.org/ngsi-ld/default-context/" + term


def test_quality_scale_is_ordered_best_first() -> None:
    assert quality.CODES[0] == "measured" and quality.CODES[-1] == "not-traceable"
    assert quality.worst("measured", "estimate") == "estimate"
