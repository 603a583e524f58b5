"""NGSI-LD query language (q, clause 4.9) and scope query language (scopeQ, clause 4.19)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urbanmim import errors
from urbanmim.ngsild.entity import NGSILD
from urbanmim.ngsild.qlang import (
    META_FIELDS,
    And,
    AttrPath,
    Comparison,
    Exists,
    LinkedPath,
    Or,
    QExpr,
    QuerySyntaxError,
    Range,
    ScopeAnd,
    ScopeExpr,
    ScopeOr,
    ScopeTerm,
    ValueList,
    parse_q,
    parse_scope_q,
)

EX = "http://example.org/"


def expand(term: str) -> str:
    return term if ":" in term else EX + term


def compact(iri: str) -> str:
    return iri.removeprefix(EX)


def q(text: str, **kw: Any) -> QExpr:
    return parse_q(text, expand, **kw)


def attr(name: str) -> str:
    return EX + name


def entity(scope: list[str] | None = None, **attrs: Any) -> dict[str, Any]:
    """An entity in the internal shape; each attribute is an instance dict or a list of them."""
    ent: dict[str, Any] = {
        "id": "urn:ngsi-ld:T:1", "type": [EX + "T"],
        "createdAt": "2024-01-01T00:00:00.000Z", "modifiedAt": "2024-06-01T12:00:00.000Z",
        "attrs": {attr(k): v if isinstance(v, list) else [v] for k, v in attrs.items()},
    }
    if scope is not None:
        ent["scope"] = scope
    return ent


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, **extra}


def hits(text: str, ent: dict[str, Any], **kw: Any) -> bool:
    return q(text, **kw).matches(ent)


# --- parsing ---------------------------------------------------------------------------------

def test_simple_comparison_ast() -> None:
    assert q("temperature==20") == Comparison(AttrPath(attr("temperature")), "==", 20)


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (Exists(AttrPath(attr(n))) for n in "abc")
    assert q("a;b|c") == Or((And((a, b)), c))
    assert q("a|b;c") == Or((a, And((b, c))))
    assert q("(a|b);c") == And((Or((a, b)), c))
    assert q("a;b;c") == And((a, b, c))


def test_nested_parentheses_as_in_spec_example_6() -> None:
    node = q('((speed>50|rpm>3000);brandName=="Mercedes")')
    assert isinstance(node, And) and isinstance(node.parts[0], Or)
    assert node.attributes() == {attr("speed"), attr("rpm"), attr("brandName")}


@pytest.mark.parametrize(("text", "value"), [
    ("a==42", 42),
    ("a==-7", -7),
    ("a==0", 0),
    ("a==2.5", 2.5),
    ("a==-1.5e3", -1500.0),
    ("a==1E-2", 0.01),
    ('a=="Mercedes"', "Mercedes"),
    ('a=="say \\"hi\\" \\u00e9\\n"', 'say "hi" é\n'),
    ('a=="x;y|z)"', "x;y|z)"),
    ("a==true", True),
    ("a==false", False),
    ("a==urn:ngsi-ld:City:Pisa", "urn:ngsi-ld:City:Pisa"),
    ("a==https://example.org/x?y=1#f", "https://example.org/x?y=1#f"),
    ("a==commercial", "commercial"),
    ("a==2018-12-04T12:00:00Z", datetime(2018, 12, 4, 12, tzinfo=UTC)),
    ("a==2018-12-04T14:00:00.250+02:00", datetime(2018, 12, 4, 12, 0, 0, 250000, tzinfo=UTC)),
    ("a==2018-12-04", date(2018, 12, 4)),
    ("a==12:30:00", time(12, 30)),
    ("a==1..5", Range(1, 5)),
    ("a==-2.5..2.5", Range(-2.5, 2.5)),
    ('a=="a".."m"', Range("a", "m")),
    ("a==2018-01-01..2018-12-31", Range(date(2018, 1, 1), date(2018, 12, 31))),
    ('a=="red","green",3,true,urn:x:y', ValueList(("red", "green", 3, True, "urn:x:y"))),
])
def test_value_kinds(text: str, value: Any) -> None:
    node = q(text)
    assert isinstance(node, Comparison)
    assert node.value == value and type(node.value) is type(value)


def test_numbers_keep_int_and_float_apart() -> None:
    assert type(q("a==1").value) is int                # type: ignore[attr-defined]
    assert type(q("a==1.0").value) is float            # type: ignore[attr-defined]
    assert type(q("a==1e2").value) is float            # type: ignore[attr-defined]


@pytest.mark.parametrize("op", ["==", "!=", ">", ">=", "<", "<=", "~=", "!~="])
def test_every_operator_parses(op: str) -> None:
    node = q(f"a{op}1" if "~" not in op else f"a{op}^x")
    assert isinstance(node, Comparison) and node.op == op


def test_paths_expand_names_but_not_meta_fields_or_trailing_keys() -> None:
    node = q("temperature.accuracy.observedAt>=2020-01-01T00:00:00Z")
    assert node.path == AttrPath(attr("temperature"), (attr("accuracy"), "observedAt"))  # type: ignore[attr-defined]
    assert q("address[city]").path == AttrPath(attr("address"), (), ("city",))  # type: ignore[attr-defined]
    dotted = q("sensor.rawdata[airquality.particulate]==40").path  # type: ignore[attr-defined]
    assert dotted == AttrPath(attr("sensor"), (attr("rawdata"),), ("airquality", "particulate"))
    assert q("a[b][c]==1") == q("a[b.c]==1")
    assert q("color[*]").path.trailing == ("*",)  # type: ignore[attr-defined]
    assert q("color[en-GB]").path.trailing == ("en-GB",)  # type: ignore[attr-defined]
    for meta in META_FIELDS:
        assert q(f"a.{meta}").path.sub == (meta,)  # type: ignore[attr-defined]


def test_entity_timestamps_are_core_iris() -> None:
    assert q('modifiedAt>"2020-01-01T00:00:00Z"').attributes() == {NGSILD + "modifiedAt"}
    assert q("createdAt").attributes() == {NGSILD + "createdAt"}


def test_linked_entity_paths() -> None:
    node = q("sensor{Device,Thing:humidity}==40")
    assert node.path == AttrPath(attr("sensor"), link=LinkedPath(  # type: ignore[attr-defined]
        (attr("Device"), attr("Thing")), AttrPath(attr("humidity"))))
    assert node.link_depth() == 1
    assert q("owner{works{name}}==\"x\";a").link_depth() == 2
    assert q("a;b").link_depth() == 0
    assert q("owner{name}").attributes() == {attr("owner")}


def test_attributes_lists_top_level_attributes_only() -> None:
    node = q("a.b>1;(c[d]==2|!e);f.observedAt>2020-01-01T00:00:00Z")
    assert node.attributes() == {attr(n) for n in "acef"}


def test_not_exists() -> None:
    assert q("!a") == Exists(AttrPath(attr("a")), negated=True)
    assert q("!a;b==1") == And((Exists(AttrPath(attr("a")), True), Comparison(AttrPath(attr("b")), "==", 1)))


@pytest.mark.parametrize(("text", "pos", "expected"), [
    ("", 0, "a query term"),
    ("a == 1", 1, "an operator"),
    ("a==", 3, "a number, quoted string"),
    ("a=1", 1, "an operator"),
    ("1a==1", 0, "an attribute name"),
    ("a==1x", 4, "after the value"),
    ("(invalidQuery", 13, "')'"),
    ("a==1)", 4, "or end of q"),
    ("a;;b", 2, "an attribute name"),
    ("a|", 2, "an attribute name"),
    ("a>4..5", 3, "ranges and lists need == or !="),
    ("a<1,2", 3, "ranges and lists need == or !="),
    ("a>true", 2, "a number, quoted string"),
    ("a>urn:x", 2, "a number, quoted string"),
    ("a==true..false", 3, "before '..'"),
    ("a==1..2..3", 7, "after a range"),
    ("a==1,2..3", 6, "cannot hold ranges"),
    ('a=="open', 3, "closing '\"'"),
    ('a=="bad \\q escape"', 3, "a valid value"),
    ("a==2018-13-45T00:00:00Z", 3, "a valid value"),
    ("a==1e999", 3, "a valid value"),
    ("a==007", 4, "after the value"),
    ("a.", 2, "sub-attribute name"),
    ("a[]", 2, "member name"),
    ("a[b", 3, "']'"),
    ("a{b", 3, "'}'"),
    ("a.b{c}==1", 3, "may only follow a plain attribute name"),
    ("!a==1", 2, "after a '!attribute' term"),
    ("a~=", 3, "a regular expression of 1 to"),
    ("a~=(unclosed", 3, "a valid regular expression"),
    ("a~=(a+)+$", 3, "nested quantifiers"),
    ("a~=" + "x" * 300, 3, "a regular expression of 1 to"),
    ('a~="x",1', 6, "after the regular expression"),
    ("(" * 40 + "a" + ")" * 40, 32, "nested levels"),
])
def test_syntax_errors_say_where_and_what(text: str, pos: int, expected: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        q(text)
    assert info.value.position == pos
    assert f"at position {pos}" in info.value.detail and expected in info.value.detail


def test_syntax_error_is_an_invalid_request_rendered_as_bad_request_data() -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        q("(invalidQuery")
    problem = info.value.to_problem()
    assert problem["status"] == 400
    assert problem["type"] == errors.ERRORS_BASE + "BadRequestData"


def test_deep_nesting_is_rejected_not_a_recursion_error() -> None:
    with pytest.raises(QuerySyntaxError):
        q("(" * 5000 + "a" + ")" * 5000)
    with pytest.raises(QuerySyntaxError):
        q("a{" * 5000 + "b" + "}" * 5000)


# --- evaluation: operators and value kinds ---------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("speed==50", True), ("speed==50.0", True), ("speed==51", False),
    ("speed!=51", True), ("speed!=50", False),
    ("speed>49", True), ("speed>50", False),
    ("speed>=50", True), ("speed>=50.5", False),
    ("speed<51", True), ("speed<50", False),
    ("speed<=50", True), ("speed<=49.9", False),
    ("speed==40..60", True), ("speed==50..50", True), ("speed==51..60", False),
    ("speed!=51..60", True), ("speed!=40..60", False),
    ("speed==1,50,3", True), ("speed==1,2,3", False),
    ("speed!=1,2,3", True), ("speed!=1,50", False),
])
def test_numeric_operators(text: str, expected: bool) -> None:
    assert hits(text, entity(speed=prop(50))) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ('name=="Eiffel Tower"', True), ('name!="Eiffel Tower"', False),
    ('name>"Eiffel"', True), ('name<"F"', True), ('name>="Eiffel Tower"', True), ('name<"Eiffel"', False),
    ('name=="A".."F"', True), ('name=="F".."Z"', False),
    ("name~=^Eiffel", True), ("name~=Tower$", True), ("name~=^Tower", False),
    ('name~="(?i)eiffel"', True), ("name~=E(iff|xx)el", True),
    ('name!~="^Eiffel"', False), ("name!~=^Pisa", True),
])
def test_string_operators(text: str, expected: bool) -> None:
    assert hits(text, entity(name=prop("Eiffel Tower"))) is expected


def test_booleans_are_not_numbers() -> None:
    flag, one = entity(a=prop(True)), entity(a=prop(1))
    assert hits("a==true", flag) and not hits("a==false", flag)
    assert not hits("a==1", flag) and not hits("a==true", one)
    assert not hits("a>0", flag)


def test_type_mismatch_never_matches_but_counts_as_unequal() -> None:
    text, number = entity(a=prop("50")), entity(a=prop(50))
    assert not hits("a==50", text) and not hits("a>10", text) and not hits('a=="50"', number)
    assert not hits("a~=5", number) and not hits("a!~=5", number)
    assert hits("a!=50", text)      # 4.9: different data types "shall be considered unequal"
    assert not hits("a==1..100", text) and hits("a!=1..100", text)
    assert not hits("a>2020-01-01T00:00:00Z", number)


def test_missing_attribute_matches_nothing_but_not_exists() -> None:
    ent = entity(other=prop(1))
    for text in ("a", "a==1", "a!=1", "a>1", "a~=x", "a!~=x", "a!=1..2", "a!=1,2", "a.observedAt"):
        assert not hits(text, ent), text
    assert hits("!a", ent) and not hits("!other", ent)


def test_exists_ignores_the_value() -> None:
    ent = entity(a=prop(0), b=prop(False), c=rel("urn:x"))
    assert all(hits(n, ent) for n in "abc")


def test_list_values_match_when_any_member_matches() -> None:
    ent = entity(colors=prop(["blue", "red", "green"]), nums=prop([1, 5, 9]))
    assert hits('colors=="red"', ent) and not hits('colors=="black"', ent)
    assert hits('colors!="black"', ent) and not hits('colors!="red"', ent)     # "not included"
    assert hits('colors=="black","red"', ent) and not hits('colors!="black","red"', ent)
    assert hits('colors!="black","white"', ent)
    assert hits("nums>8", ent) and not hits("nums>9", ent)
    assert hits("nums==6..9", ent) and not hits("nums==6..8", ent)
    assert hits("colors~=^gr", ent) and not hits("colors!~=^gr", ent) and hits("colors!~=^x", ent)


def test_boolean_grouping_evaluation() -> None:
    ent = entity(speed=prop(60), rpm=prop(1000), brandName=prop("Mercedes"))
    assert hits('((speed>50|rpm>3000);brandName=="Mercedes")', ent)
    assert not hits('(speed>70|rpm>3000);brandName=="Mercedes"', ent)
    assert hits('speed>70|rpm>3000|brandName=="Mercedes"', ent)
    assert hits("(speed>=20;speed<=25)|rpm<=1000", ent)
    assert not hits("speed>50;!brandName", ent)


# --- attribute types -------------------------------------------------------------------------

def test_relationships_compare_objects_and_only_with_equality() -> None:
    ent = entity(locatedIn=rel("urn:ngsi-ld:City:Pisa"), sees=rel(["urn:a", "urn:b"]))
    assert hits("locatedIn==urn:ngsi-ld:City:Pisa", ent)
    assert hits('locatedIn=="urn:ngsi-ld:City:Pisa"', ent)             # spec EXAMPLE 3
    assert not hits("locatedIn==urn:ngsi-ld:City:Paris", ent)
    assert hits("locatedIn==urn:ngsi-ld:City:Paris,urn:ngsi-ld:City:Pisa", ent)
    assert hits("locatedIn!=urn:ngsi-ld:City:Paris", ent)
    assert hits("sees==urn:b", ent) and not hits("sees!=urn:b", ent)
    assert not hits('locatedIn>"urn:a"', ent) and not hits("locatedIn~=Pisa", ent)


def test_list_relationship_and_list_property() -> None:
    ent = entity(members={"type": "ListRelationship", "objectList": ["urn:p:1", "urn:p:2"]},
                 readings={"type": "ListProperty", "valueList": [3, 7, 11]})
    assert hits("members==urn:p:2", ent) and not hits("members==urn:p:3", ent)
    assert not hits('members<"urn:z"', ent)
    assert hits("readings==7", ent) and hits("readings>10", ent) and not hits("readings>11", ent)


def test_language_property() -> None:
    ent = entity(color={"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red", "de": ["rot", "rote"]}})
    assert hits('color=="rouge"', ent) and hits('color=="rote"', ent)
    assert hits('color[en]=="red"', ent) and not hits('color[en]=="rouge"', ent)
    assert hits('color[EN]=="red"', ent)                                   # tags are case-insensitive
    assert hits('color[de]=="rote"', ent)
    assert hits('color[*]=="rouge"', ent) and not hits('color[*]!="red"', ent)
    assert hits('color[fr]!="red"', ent) and not hits('color[fr]!="rouge"', ent)
    assert hits("color[en]", ent) and not hits("color[es]", ent) and not hits('color[es]!="x"', ent)
    assert hits("color~=^rou", ent)


def test_vocab_property_matches_the_expanded_term_by_default() -> None:
    ent = entity(category={"type": "VocabProperty", "vocab": EX + "commercial"},
                 tags={"type": "VocabProperty", "vocab": [EX + "a", EX + "b"]})
    assert hits("category==commercial", ent)
    assert hits(f"category=={EX}commercial", ent)
    assert hits('category=="commercial"', ent) and not hits("category!=commercial", ent)
    assert hits("category==other,commercial", ent) and not hits("category==other", ent)
    assert hits("tags==b", ent) and not hits("tags!=b", ent)


def test_expand_values_restricts_value_expansion_to_the_listed_attributes() -> None:
    ent = entity(category={"type": "VocabProperty", "vocab": EX + "commercial"},
                 kind=prop(EX + "shop"), label=prop("shop"))
    assert not hits("category==commercial", ent, expand_values=())      # compared literally
    assert hits("category==commercial", ent, expand_values=["category"])
    assert hits("category==commercial", ent, expand_values=[EX + "category"])
    assert hits("kind==shop", ent, expand_values=["kind"])               # any attribute type
    assert not hits("kind==shop", ent)                                   # default: Vocab only
    assert hits("label==shop", ent, expand_values=["label"])             # literal still matches


def test_json_property_and_trailing_paths() -> None:
    ent = entity(
        address=prop({"city": "Berlin", "street": "Ulrich Strasse", "geo": {"zip": 10115}}),
        tickets={"type": "JsonProperty", "json": {"id": "85a6", "value": "Overstay 60 minutes"}},
        stops=prop([{"name": "A", "n": 1}, {"name": "B", "n": 2}]),
    )
    assert hits('address[city]=="Berlin"', ent) and not hits('address[city]=="Paris"', ent)
    assert hits("address[city]", ent) and not hits("address[postcode]", ent)
    assert not hits('address[postcode]=="Berlin"', ent) and not hits('address[postcode]!="x"', ent)
    assert hits("address[geo.zip]==10115", ent) and hits("address[geo][zip]>10000", ent)
    assert not hits("address[city.x]", ent)
    assert not hits("address[*]==10115", ent) and hits('address[*]=="Berlin"', ent)
    assert hits('tickets[value]=="Overstay 60 minutes"', ent)            # spec EXAMPLE 11
    assert hits('stops[name]=="B"', ent) and hits("stops[n]>1", ent) and not hits("stops[n]>2", ent)
    assert not hits('address=="Berlin"', ent) and hits('address!="Berlin"', ent)


def test_sub_attributes_and_meta_fields() -> None:
    ent = entity(temperature=prop(
        21.5, unitCode="CEL", observedAt="2024-03-01T10:00:00.000Z", createdAt="2024-01-01T00:00:00Z",
        **{attr("accuracy"): prop(0.2, observedAt="2024-03-01T09:00:00Z"),
           attr("sensor"): rel("urn:ngsi-ld:Sensor:1")}))
    assert hits("temperature.accuracy<0.5", ent) and not hits("temperature.accuracy>0.5", ent)
    assert hits("temperature.accuracy", ent) and not hits("temperature.precision", ent)
    assert hits('temperature.unitCode=="CEL"', ent) and hits("temperature.unitCode==CEL", ent)
    assert hits("temperature.observedAt>=2024-03-01T10:00:00Z", ent)
    assert not hits("temperature.observedAt>2024-03-01T10:00:00Z", ent)
    assert hits("temperature.createdAt<2024-02-01T00:00:00Z", ent)
    assert not hits("temperature.modifiedAt", ent)
    assert hits("temperature.accuracy.observedAt==2024-03-01T09:00:00Z", ent)
    assert hits("temperature.sensor==urn:ngsi-ld:Sensor:1", ent)
    assert not hits("temperature.observedAt.x", ent)


def test_dataset_id_meta_and_multiple_instances() -> None:
    ent = entity(speed=[prop(40), prop(80, datasetId="urn:ds:gps"), prop(60, datasetId="urn:ds:radar")])
    assert hits("speed==80", ent) and hits("speed>70", ent) and hits("speed<50", ent)
    assert not hits("speed>90", ent)
    assert hits("speed!=40", ent)                 # another instance's value differs
    assert hits("speed.datasetId==urn:ds:radar", ent) and not hits("speed.datasetId==urn:ds:x", ent)
    single = entity(speed=[prop(40, datasetId="urn:ds:a")])
    assert not hits("speed!=40", single)


def test_datetimes_compare_by_instant() -> None:
    ent = entity(
        seen=prop("2018-12-04T12:00:00.000Z"),
        local=prop("2018-12-04T14:00:00+02:00"),
        typed=prop({"@type": "DateTime", "@value": "2018-12-04T12:00:00.123456Z"}),
        naive=prop("2018-12-04T12:00:00"),
        day=prop("2018-12-04"), at=prop("12:00:00Z"),
    )
    for name in ("seen", "local", "naive"):
        assert hits(f"{name}==2018-12-04T12:00:00Z", ent), name
        assert hits(f"{name}==2018-12-04T13:00:00+01:00", ent), name
        assert hits(f"{name}>2018-12-04T11:59:59.999Z", ent), name
        assert not hits(f"{name}>2018-12-04T12:00:00Z", ent), name
    assert hits("typed>2018-12-04T12:00:00.123Z", ent) and hits("typed<2018-12-04T12:00:00.2Z", ent)
    assert hits('seen>"2018-01-01T00:00:00Z"', ent)            # a quoted DateTime still by instant
    assert hits('local=="2018-12-04T12:00:00Z"', ent)
    assert hits("seen==2018-12-04T00:00:00Z..2018-12-05T00:00:00Z", ent)
    assert not hits("seen==2018-12-05T00:00:00Z..2018-12-06T00:00:00Z", ent)
    assert hits("day==2018-12-04", ent) and hits("day>2018-12-03", ent) and not hits("day<2018-12-04", ent)
    assert not hits("seen==2018-12-04", ent) and not hits("day==2018-12-04T00:00:00Z", ent)
    assert hits("at==12:00:00", ent) and hits("at==13:00:00+01:00", ent) and hits("at<12:00:01", ent)


def test_entity_timestamps() -> None:
    ent = entity(a=prop(1))
    assert hits("modifiedAt>2024-05-01T00:00:00Z", ent) and not hits("createdAt>2024-05-01T00:00:00Z", ent)
    assert hits('modifiedAt>"2020-01-01T00:00:00Z"', ent)
    assert hits("createdAt", ent)


def test_linked_entity_paths_follow_relationships_through_the_resolver() -> None:
    device = {"id": "urn:d:1", "type": [EX + "Device"], "attrs": {attr("humidity"): [prop(40)]}}
    station = entity(sensor=rel("urn:d:1"), broken=rel("urn:d:404"))
    resolve = {"urn:d:1": device}.get
    assert q("sensor{humidity}==40").matches(station, resolve)
    assert q("sensor{Device:humidity}==40").matches(station, resolve)
    assert not q("sensor{Vehicle:humidity}==40").matches(station, resolve)
    assert not q("sensor{humidity}>40").matches(station, resolve)
    assert not q("broken{humidity}").matches(station, resolve)
    assert not q("sensor{humidity}==40").matches(station)             # no resolver: no match
    assert q("sensor{humidity}").matches(station, resolve)


# --- property tests --------------------------------------------------------------------------

def render(node: QExpr) -> str:
    """AST -> q text (the inverse of parse_q with ``expand``)."""
    if isinstance(node, And | Or):
        sep = ";" if isinstance(node, And) else "|"
        return sep.join(f"({render(p)})" if isinstance(p, And | Or) else render(p) for p in node.parts)
    if isinstance(node, Exists):
        return ("!" if node.negated else "") + render_path(node.path)
    assert isinstance(node, Comparison)
    return render_path(node.path) + node.op + render_value(node.value)


def render_path(path: AttrPath) -> str:
    text = compact(path.attr)
    if path.link is not None:
        hint = ",".join(compact(t) for t in path.link.types)
        return f"{text}{{{hint + ':' if hint else ''}{render_path(path.link.path)}}}"
    text += "".join("." + compact(s) for s in path.sub)
    return text + (f"[{'.'.join(path.trailing)}]" if path.trailing else "")


def render_value(v: Any) -> str:
    if isinstance(v, Range):
        return f"{render_value(v.lo)}..{render_value(v.hi)}"
    if isinstance(v, ValueList):
        return ",".join(render_value(i) for i in v.items)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return v.isoformat() if isinstance(v, date | time) else repr(v)


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True).filter(
    lambda n: n not in META_FIELDS and n not in ("true", "false"))
keys = st.from_regex(r"\*|[A-Za-z0-9_-]{1,5}", fullmatch=True)
plain_paths = st.builds(
    lambda a, sub, meta, trailing: AttrPath(EX + a, tuple(EX + s for s in sub) + meta, () if meta else trailing),
    names, st.lists(names, max_size=2), st.sampled_from([(), ("observedAt",), ("unitCode",)]),
    st.lists(keys, max_size=3).map(tuple))
paths = plain_paths | st.builds(
    lambda a, types, inner: AttrPath(EX + a, link=LinkedPath(tuple(EX + t for t in types), inner)),
    names, st.lists(names, max_size=2), plain_paths)
comparables = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.datetimes(timezones=st.just(UTC)), st.dates(), st.times())
scalars = comparables | st.booleans()
comparisons = st.one_of(
    st.builds(Comparison, paths, st.sampled_from([">", ">=", "<", "<="]), comparables),
    st.builds(Comparison, paths, st.sampled_from(["==", "!="]), st.one_of(
        scalars, st.builds(Range, comparables, comparables),
        st.lists(scalars, min_size=2, max_size=4).map(lambda i: ValueList(tuple(i))))),
    st.builds(Comparison, paths, st.sampled_from(["~=", "!~="]),
              st.from_regex(r"[\^]?[A-Za-z0-9 .;|]{1,8}[$]?", fullmatch=True)))
leaves = comparisons | st.builds(Exists, paths, st.booleans())
queries = st.recursive(leaves, lambda kids: st.one_of(
    st.lists(kids, min_size=2, max_size=3).map(lambda p: And(tuple(p))),
    st.lists(kids, min_size=2, max_size=3).map(lambda p: Or(tuple(p)))), max_leaves=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
def test_rendered_asts_round_trip_through_the_parser(node: QExpr) -> None:
    assert q(render(node)) == node


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.sampled_from(["2020-01-01T00:00:00Z", "2020-01-01", "12:00:00", "urn:x"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "@value"]), kids, max_size=2),
    max_leaves=6)
instances = st.builds(lambda t, v: {"type": t, {"Property": "value", "Relationship": "object",
                                               "LanguageProperty": "languageMap", "ListProperty": "valueList",
                                               "JsonProperty": "json", "VocabProperty": "vocab"}[t]: v},
                      st.sampled_from(["Property", "Relationship", "LanguageProperty", "ListProperty",
                                       "JsonProperty", "VocabProperty"]), json_values)
entities = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(instances, min_size=1, max_size=2)).map(
    lambda attrs: entity(**attrs))
simple_terms = st.builds(
    lambda a, op, v: f"{a}{op}{v}", st.sampled_from(["a", "b", "c", "a[a]", "b.observedAt"]),
    st.sampled_from(["==", "!=", ">", "<=", "~=", "!~="]),
    st.sampled_from(["1", "0", '"x"', "2020-01-01T00:00:00Z", "12:00:00"])).filter(
    lambda t: "~=" not in t or t.endswith('"x"')) | st.sampled_from(["a", "!b", "c[b]"])


@settings(max_examples=300)
@given(simple_terms, simple_terms, entities)
def test_and_or_mean_both_and_either(a: str, b: str, ent: dict[str, Any]) -> None:
    qa, qb = q(a).matches(ent), q(b).matches(ent)
    assert q(f"{a};{b}").matches(ent) is (qa and qb)
    assert q(f"{a}|{b}").matches(ent) is (qa or qb)
    assert q(f"({a}|{b});{a}").matches(ent) is qa


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(queries, entities)
def test_matching_never_raises(node: QExpr, ent: dict[str, Any]) -> None:
    assert node.matches(ent, lambda _id: ent) in (True, False)


q_alphabet = st.sampled_from(list('()|;,.=!<>~"[]{}:/#+*\\- 0123456789aebTZxtrufls')) | st.characters()


@settings(max_examples=1000)
@given(st.text(q_alphabet, max_size=40))
def test_parser_only_ever_raises_invalid_request(text: str) -> None:
    try:
        node = q(text)
    except errors.InvalidRequest:
        return
    assert isinstance(node, QExpr) and node.attributes()


@settings(max_examples=500)
@given(st.text(q_alphabet, max_size=30))
def test_scope_parser_only_ever_raises_invalid_request(text: str) -> None:
    try:
        parse_scope_q(text)
    except errors.InvalidRequest:
        pass


# --- scopeQ ----------------------------------------------------------------------------------

MANY = ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]
ONE = ["/Madrid/Gardens/ParqueNorte"]


@pytest.mark.parametrize(("text", "scopes", "expected"), [
    ("/Madrid", ["/Madrid"], True),
    ("/Madrid", ["/Madrid/Gardens"], False),
    ("/Madrid/Gardens/#", ["/Madrid/Gardens"], True),
    ("/Madrid/Gardens/#", ["/Madrid/Gardens/ParqueNorte/Parterre1"], True),
    ("/Madrid/Gardens/#", ["/Madrid/GardensX"], False),
    ("/Madrid/Gardens/#", ["/Madrid/Sights"], False),
    ("/Madrid/+/ParqueNorte", ["/Madrid/Sights/ParqueNorte"], True),
    ("/Madrid/+/ParqueNorte", ["/Madrid/ParqueNorte"], False),
    ("/Madrid/+", ["/Madrid/Gardens"], True),
    ("/Madrid/+", ["/Madrid/Gardens/ParqueNorte"], False),
    ("/Madrid/+/#", ["/Madrid/Gardens/ParqueNorte"], True),
    ("/#", ["/Anything"], True),
    ("/#", [], False),
    ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", MANY, True),
    ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", ONE, False),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)", ONE, False),
    ("(/Madrid/Gardens/ParqueNorte;/Nowhere/AtAll)", MANY, False),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/#)|/Nowhere", MANY, True),
    ("(/Nowhere;/CompanyA/#)|/Madrid/Gardens/ParqueNorte", ONE, True),
    ("/CompanyA/OrganizationB/UnitC|/Nowhere/AtAll", MANY, True),
    ("/CompanyA/OrganizationB/UnitC,/Nowhere/AtAll", ONE, False),
    ("/Madrid/Gardens/ParqueNorte,/CompanyA/OrganizationB/UnitC", ONE, True),
    ("/Madrid_1/Zone2", ["/Madrid_1/Zone2"], True),
])
def test_scope_queries(text: str, scopes: list[str], expected: bool) -> None:
    assert parse_scope_q(text).matches(entity(scope=scopes)) is expected


def test_scope_query_without_entity_scope_never_matches() -> None:
    assert not parse_scope_q("/#").matches(entity())
    assert parse_scope_q("/a").matches({"scope": "/a"})        # a bare string is tolerated


def test_scope_ast() -> None:
    assert parse_scope_q("/#") == ScopeTerm((), True)
    assert parse_scope_q("(/a/+;/b/#)|/c") == ScopeOr((ScopeAnd((ScopeTerm(("a", "+")), ScopeTerm(("b",), True))),
                                                       ScopeTerm(("c",))))
    assert parse_scope_q("/a,/b") == parse_scope_q("/a|/b")


@pytest.mark.parametrize(("text", "pos"), [
    ("", 0), ("Madrid", 0), ("/", 1), ("/Madrid/", 8), ("/Madrid//x", 8), ("/Madrid/#/x", 9),
    ("/1Madrid", 1), ("/Ma drid", 3), ("(/a;/b", 6), ("/a;", 3), ("/a|", 3), ("/a)", 2), ("/a-b", 2),
])
def test_invalid_scope_queries(text: str, pos: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_scope_q(text)
    assert info.value.position == pos and "scopeQ" in info.value.detail


scope_terms = st.builds(ScopeTerm, st.lists(names | st.just("+"), max_size=3).map(tuple), st.booleans()).filter(
    lambda t: t.levels or t.descendants)
scope_queries = st.recursive(scope_terms, lambda kids: st.one_of(
    st.lists(kids, min_size=2, max_size=3).map(lambda p: ScopeAnd(tuple(p))),
    st.lists(kids, min_size=2, max_size=3).map(lambda p: ScopeOr(tuple(p)))), max_leaves=6)


def render_scope(node: ScopeExpr) -> str:
    if isinstance(node, ScopeTerm):
        return "".join("/" + lv for lv in node.levels) + ("/#" if node.descendants else "")
    sep = ";" if isinstance(node, ScopeAnd) else "|"
    return "(" + sep.join(render_scope(p) for p in node.parts) + ")"  # type: ignore[attr-defined]


@given(scope_queries, st.lists(st.sampled_from(["/a", "/a/b", "/a/b/c", "/B/a", "/c"]), max_size=3))
def test_scope_round_trip_and_boolean_semantics(node: ScopeExpr, scopes: list[str]) -> None:
    assert parse_scope_q(render_scope(node)) == node
    ent = entity(scope=scopes)
    if isinstance(node, ScopeAnd):
        assert node.matches(ent) is all(p.matches(ent) for p in node.parts)
    elif isinstance(node, ScopeOr):
        assert node.matches(ent) is any(p.matches(ent) for p in node.parts)


@given(st.lists(names, min_size=1, max_size=4), st.lists(names, min_size=1, max_size=4))
def test_scope_hash_is_prefix_and_plus_is_one_level(levels: list[str], extra: list[str]) -> None:
    base = "/" + "/".join(levels)
    ent_self, ent_below = entity(scope=[base]), entity(scope=[base + "/" + "/".join(extra)])
    assert parse_scope_q(base + "/#").matches(ent_self) and parse_scope_q(base + "/#").matches(ent_below)
    plus = "/" + "/".join(["+"] * len(levels))
    assert parse_scope_q(plus).matches(ent_self) and not parse_scope_q(plus).matches(ent_below)


def test_datetime_with_offset_is_normalised_to_utc() -> None:
    node = q("a==2020-06-01T02:00:00+02:00")
    assert node.value == datetime(2020, 6, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert node.value == datetime(2020, 6, 1, 2, tzinfo=timezone(timedelta(hours=2)))  # type: ignore[attr-defined]
