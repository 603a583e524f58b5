"""CQL2-text → q AST (urbanmim/ogc/cql2.py), without a server: the translation, SQL's three-valued logic
(checked by Hypothesis against a direct Kleene-logic evaluation), LIKE patterns, and what is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanmim.ngsild.entity import DEFAULT_VOCAB, LOCATION
from urbanmim.ngsild.qlang import And, Comparison, Exists, Or, Range, ValueList
from urbanmim.ogc.catalogue import Collection
from urbanmim.ogc.cql2 import FilterError, compile_filter, like_regex
from urbanmim.ogc.nodes import GeoTerm, PresentAndNot

NAMES = ("num", "val", "txt")   # pygeofilter needs 2+ characters for an unquoted name
IRI = {n: f"https://example.org/{n}" for n in NAMES}


def collection() -> Collection:
    names = {IRI[n]: n for n in NAMES}
    names[IRI["txt"] + "Geo"] = "area"
    kinds = {IRI["num"]: {"Property"}, IRI["val"]: {"Property"}, IRI["txt"]: {"Property"},
             IRI["txt"] + "Geo": {"GeoProperty"}, LOCATION: {"GeoProperty"}}
    return Collection(id="T", tenant="", type_iri=DEFAULT_VOCAB + "T", title="T", count=0, names=names,
                      iris={v: k for k, v in names.items()}, kinds=kinds)


COL = collection()


def entity(values: dict[str, Any], point: tuple[float, float] | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {IRI[k]: [{"type": "Property", "value": v}] for k, v in values.items() if v is not None}
    if point is not None:
        attrs[LOCATION] = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(point)}}]
    return {"id": "urn:ngsi-ld:T:1", "type": [DEFAULT_VOCAB + "T"], "attrs": attrs}


def matches(cql: str, ent: dict[str, Any]) -> bool:
    f = compile_filter(cql, COL)
    return (f.q is None or f.q.matches(ent)) and (f.geo is None or f.geo.matches(ent))


# ---- translation ------------------------------------------------------------------------------

def test_comparisons_become_q_comparisons() -> None:
    f = compile_filter("num > 3 AND txt = 'a'", COL)
    assert isinstance(f.q, And)
    assert f.q.parts == (Comparison(f.q.parts[0].path, ">", 3), Comparison(f.q.parts[1].path, "==", "a"))
    assert f.attrs == {IRI["num"]}                      # served by the store's attribute index
    f = compile_filter("3 < num", COL)                  # literal first: the operator flips
    assert isinstance(f.q, Comparison) and f.q.op == ">" and f.q.value == 3


def test_not_is_pushed_to_the_leaves() -> None:
    f = compile_filter("NOT (num > 3 OR txt = 'a')", COL)
    assert isinstance(f.q, And)
    assert [(p.op, p.value) for p in f.q.parts] == [("<=", 3), ("!=", "a")]
    f = compile_filter("NOT NOT num = 1", COL)
    assert isinstance(f.q, Comparison) and f.q.op == "=="
    f = compile_filter("num NOT BETWEEN 1 AND 2", COL)
    assert isinstance(f.q, Comparison) and f.q.op == "!=" and f.q.value == Range(1, 2)
    f = compile_filter("num NOT IN (1, 2)", COL)
    assert isinstance(f.q, Comparison) and f.q.op == "!=" and f.q.value == ValueList((1, 2))
    f = compile_filter("NOT txt IS NULL", COL)
    assert f.q == Exists(f.q.path, negated=False)
    f = compile_filter("num = 1 OR NOT (txt LIKE 'a%')", COL)
    assert isinstance(f.q, Or) and f.q.parts[1].op == "!~="


def test_spatial_conjunct_goes_to_the_spatial_index() -> None:
    f = compile_filter("S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))) AND num = 1", COL)
    assert f.geo is not None and f.geo.georel == "intersects"
    assert isinstance(f.q, Comparison)
    f = compile_filter("S_INTERSECTS(geometry, POINT(0 0)) OR num = 1", COL)
    assert f.geo is None and isinstance(f.q, Or) and isinstance(f.q.parts[0], GeoTerm)
    f = compile_filter("NOT S_WITHIN(geometry, POLYGON((0 0, 1 0, 1 1, 0 1, 0 0)))", COL)
    assert isinstance(f.q, PresentAndNot)
    f = compile_filter("NOT S_INTERSECTS(geometry, POINT(0 0))", COL)
    assert f.geo is None and isinstance(f.q, GeoTerm) and f.q.geo.georel == "disjoint"  # no index for disjoint
    f = compile_filter("S_WITHIN(POINT(0.5 0.5), geometry)", COL)     # literal first: the converse relation
    assert f.geo is not None and f.geo.georel == "contains"


def test_spatial_semantics() -> None:
    inside, outside, nowhere = entity({}, (0.5, 0.5)), entity({}, (5, 5)), entity({})
    square = "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"
    assert matches(f"S_WITHIN(geometry, {square})", inside)
    assert not matches(f"S_WITHIN(geometry, {square})", outside)
    assert matches(f"NOT S_WITHIN(geometry, {square})", outside)
    assert not matches(f"NOT S_WITHIN(geometry, {square})", nowhere)     # no geometry: unknown, not a match
    assert not matches(f"NOT S_INTERSECTS(geometry, {square})", nowhere)
    assert matches("BBOX(geometry, 0, 0, 1, 1)", inside)
    assert matches("S_INTERSECTS(geometry, BBOX(0, 0, 1, 1))", inside)          # the CQL2 bbox literal
    assert not matches("S_INTERSECTS(geometry, BBOX(2, 0, 3, 1))", inside)
    assert matches("S_INTERSECTS(geometry, ENVELOPE(0 1 0 1))", inside)         # pygeofilter: west east south north


@pytest.mark.parametrize(("pattern", "text", "hit"), [
    ("a%", "abc", True), ("a%", "ba", False), ("%c", "abc", True), ("a_c", "abc", True), ("a_c", "abbc", False),
    ("100\\%", "100%", True), ("100\\%", "1000", False), ("a.c", "abc", False), ("(val)", "(val)", True),
    ("%", "", True), ("a%", "a\nb", True),
])
def test_like_patterns(pattern: str, text: str, hit: bool) -> None:
    assert (re.search(like_regex(pattern), text) is not None) is hit


@pytest.mark.parametrize("cql", [
    "num >", "nope = 1", "num = val", "num + 1 > 2", "T_AFTER(num, TIMESTAMP('2024-01-01T00:00:00Z'))",
    "num T_AFTER TIMESTAMP('2024-01-01T00:00:00Z')", "S_CROSSES(geometry, POINT(0 0))",
    "S_INTERSECTS(num, POINT(0 0))", "S_INTERSECTS(geometry, POINT(0 100))", "CASEI(txt) = 'a'",
    "A_CONTAINS(txt, ('a'))", "S_INTERSECTS(geometry, BBOX(1, 1, 0, 0))", "S_INTERSECTS(geometry, BBOX(1, 2))",
    "S_DWITHIN(geometry, POINT(0 0), 10, meters)", "txt = POINT(0 0)", "  ", "num = 1" * 5000,
])
def test_refused_with_a_clear_message(cql: str) -> None:
    with pytest.raises(FilterError) as err:
        compile_filter(cql, COL)
    assert err.value.status == 400 and err.value.detail


def test_filter_lang_and_crs() -> None:
    assert compile_filter("num = 1", COL, lang="cql-text").q is not None      # the name GDAL 3.6 sends
    with pytest.raises(FilterError):
        compile_filter("num = 1", COL, lang="cql2-json")
    with pytest.raises(FilterError):
        compile_filter("num = 1", COL, crs="http://www.opengis.net/def/crs/EPSG/0/3857")


def test_timestamps_and_dates_compare_by_instant() -> None:
    ent = entity({"txt": "2024-05-01T12:00:00+02:00"})
    assert matches("txt = TIMESTAMP('2024-05-01T10:00:00Z')", ent)
    assert matches("txt < TIMESTAMP('2024-05-01T10:00:01Z')", ent)
    ent["attrs"][IRI["txt"]][0]["value"] = "2024-05-01"
    assert matches("txt = DATE('2024-05-01')", ent)


# ---- three-valued logic, against a direct evaluation -------------------------------------------

Unknown = None


def _k_not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _k_and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _k_or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


_OPS = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}

Expr = tuple[str, Any]      # (CQL2 text, reference: values -> True/False/None)


def _leaf() -> st.SearchStrategy[Expr]:
    num = st.integers(0, 4)
    cmp = st.builds(lambda name, op, k: (f"{name} {op} {k}",
                                         lambda v, name=name, op=op, k=k: None if v[name] is None
                                         else _OPS[op](v[name], k)),
                    st.sampled_from(["num", "val"]), st.sampled_from(sorted(_OPS)), num)
    eq_s = st.builds(lambda op, k: (f"txt {op} '{k}'", lambda v, op=op, k=k: None if v["txt"] is None
                                    else _OPS[op](v["txt"], k)),
                     st.sampled_from(["=", "<>", "<", ">="]), st.sampled_from(["a", "ab", "b", ""]))
    inn = st.builds(lambda ks, neg: (f"num {'NOT ' if neg else ''}IN ({', '.join(map(str, ks))})",
                                     lambda v, ks=ks, neg=neg: None if v["num"] is None else (v["num"] in ks) != neg),
                    st.lists(num, min_size=1, max_size=3), st.booleans())
    btw = st.builds(lambda lo, hi, neg: (f"val {'NOT ' if neg else ''}BETWEEN {lo} AND {hi}",
                                         lambda v, lo=lo, hi=hi, neg=neg: None if v["val"] is None
                                         else (lo <= v["val"] <= hi) != neg),
                    num, num, st.booleans())
    like = st.builds(lambda p, neg: (f"txt {'NOT ' if neg else ''}LIKE '{p}'",
                                     lambda v, p=p, neg=neg: None if v["txt"] is None
                                     else (re.fullmatch(p.replace("%", ".*").replace("_", "."), v["txt"],
                                                        re.S) is not None) != neg),
                     st.text("ab%_", max_size=3), st.booleans())
    null = st.builds(lambda name, neg: (f"{name} IS {'NOT ' if neg else ''}NULL",
                                        lambda v, name=name, neg=neg: (v[name] is None) != neg),
                     st.sampled_from(NAMES), st.booleans())
    return st.one_of(cmp, eq_s, inn, btw, like, null)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    both = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda c: (f"NOT ({c[0]})", lambda v, c=c: _k_not(c[1](v))), children),
        st.builds(lambda ab: (f"({ab[0][0]}) AND ({ab[1][0]})", lambda v, ab=ab: _k_and(ab[0][1](v), ab[1][1](v))),
                  both),
        st.builds(lambda ab: (f"({ab[0][0]}) OR ({ab[1][0]})", lambda v, ab=ab: _k_or(ab[0][1](v), ab[1][1](v))),
                  both),
    )


EXPRS = st.recursive(_leaf(), _extend, max_leaves=6)
VALUES = st.fixed_dictionaries({"num": st.none() | st.integers(0, 4), "val": st.none() | st.integers(0, 4).map(float),
                                "txt": st.none() | st.sampled_from(["", "a", "ab", "b", "ba"])})


@settings(max_examples=400, deadline=None)
@given(EXPRS, st.lists(VALUES, min_size=1, max_size=6))
def test_filters_follow_sql_three_valued_logic(expr: Expr, rows: list[dict[str, Any]]) -> None:
    text, reference = expr
    for values in rows:
        assert matches(text, entity(values)) is (reference(values) is True), (text, values)
