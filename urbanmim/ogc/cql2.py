"""CQL2-text filters (OGC API Features Part 3) compiled to the platform's own q AST.

Parsing is pygeofilter's (the CQL2 grammar and AST maintained by the pygeoapi people, with two
one-line grammar corrections applied at load time, see :func:`_parser`); nothing here reads
text. Its AST is then translated node by node to :mod:`urbanmim.ngsild.qlang` nodes plus the few
leaves of :mod:`urbanmim.ogc.nodes`, and the resulting tree is handed to the store as
``EntityQuery.q`` -- so the store pre-filters with its indexes, decides each candidate exactly,
pages and counts, as for any NGSI-LD query. A top-level spatial conjunct becomes
``EntityQuery.geo`` (the R-tree serves it) and a top-level attribute condition
``EntityQuery.attrs`` (the attribute index serves it).

**Three-valued logic.** CQL2 follows SQL: a comparison with a missing property is *unknown*, and
``NOT unknown`` is still unknown -- no match. q has no NOT node; instead its negated operators
already mean "present and not ..." (``!=``, ``!~=``). So ``NOT`` is pushed down to the leaves
(De Morgan) and each leaf is replaced by its negated form: ``NOT a = 1`` is ``a != 1``, ``NOT a
< 1`` is ``a >= 1``, ``NOT a BETWEEN x AND y`` is ``a != x..y``, ``NOT a LIKE p`` is ``a !~=
p``, ``NOT S_INTERSECTS`` is ``S_DISJOINT``; where q has no negated form a
:class:`nodes.PresentAndNot` leaf does the same.

**The subset** (anything else is a 400 naming the construct): comparisons ``= <> < <= > >=`` of
a property with a literal (string, number, boolean, ``TIMESTAMP``, ``DATE``); ``AND``, ``OR``,
``NOT``; ``LIKE`` (``%`` any characters, ``_`` one character, ``\\`` escapes, case sensitive);
``IN``; ``BETWEEN``; ``IS [NOT] NULL``; ``INCLUDE``/``EXCLUDE``; the spatial predicates
``S_INTERSECTS``, ``S_WITHIN``, ``S_CONTAINS``, ``S_DISJOINT``, ``S_EQUALS``, ``S_OVERLAPS`` and
``BBOX`` between a geometry property and a WKT literal or ``ENVELOPE``, in CRS84 (``filter-crs``
accepts only CRS84); a box is ``BBOX(west, south, east, north)`` (pygeofilter's ``ENVELOPE(west
east south north)`` works too). Property names are the collection's queryables; ``geometry`` is
the feature geometry (the entity's ``location``).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import shapely
from lark import Lark
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from pygeofilter import ast, values
from shapely.errors import GEOSException
from shapely.geometry import shape

from urbanmim.errors import InvalidRequest, NgsiError
from urbanmim.ngsild.entity import LOCATION
from urbanmim.ngsild.geo import GeoQuery
from urbanmim.ngsild.qlang import And, AttrPath, Comparison, Exists, Or, QExpr, Range, ValueList
from urbanmim.ogc.catalogue import GEOMETRY, Collection
from urbanmim.ogc.features import CRS84
from urbanmim.ogc.nodes import Const, GeoTerm, PresentAndNot

log = logging.getLogger(__name__)
LANGUAGES = ("cql2-text", "cql-text")   # cql-text: what GDAL <= 3.6 calls it (its text is basic CQL2)
MAX_FILTER = 20_000          # characters
MAX_NODES = 500              # predicates and junctions in one filter
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_Q_OP = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
# CQL2 relation -> (georel with the entity's geometry first, its complement or None)
_SPATIAL = {"INTERSECTS": ("intersects", "disjoint"), "DISJOINT": ("disjoint", "intersects"),
            "WITHIN": ("within", None), "CONTAINS": ("contains", None), "EQUALS": ("equals", None),
            "OVERLAPS": ("overlaps", None)}
_CONVERSE = {"within": "contains", "contains": "within"}   # S_WITHIN(POINT(..), geometry)


class FilterError(InvalidRequest):
    """A filter that is not CQL2-text, or uses what this server does not support (400)."""

    title = "Invalid filter"


@dataclass
class CompiledFilter:
    q: QExpr | None                 # the whole filter, or what is left after ``geo`` was taken out
    geo: GeoQuery | None = None     # a top-level spatial conjunct (served by the spatial index)
    attrs: set[str] | None = None   # an attribute every match has (served by the attribute index)


def _syntax_error(text: str, exc: Exception) -> FilterError:
    if isinstance(exc, UnexpectedEOF):
        return FilterError("filter is not valid CQL2-text: it ends too early")
    if isinstance(exc, UnexpectedToken) and getattr(exc.token, "type", "") == "$END":
        return FilterError("filter is not valid CQL2-text: it ends too early")
    if isinstance(exc, UnexpectedCharacters | UnexpectedToken | UnexpectedInput):
        col = getattr(exc, "column", None)
        pos = getattr(exc, "pos_in_stream", None)
        near = text[pos:pos + 20] if isinstance(pos, int) and pos >= 0 else ""
        where = f" at column {col}" if isinstance(col, int) and col > 0 else ""
        return FilterError(f"filter is not valid CQL2-text{where}" + (f", near {near!r}" if near else ""))
    return FilterError(f"filter is not valid CQL2-text: {str(exc).splitlines()[0][:200]}")


@functools.cache
def _parser() -> Any:
    """pygeofilter's CQL2-text grammar and transformer, with two corrections made at load time.

    pygeofilter 0.4 accepts ``NOT`` only before a single predicate (CQL2 allows ``NOT (a OR b)``)
    and property names of two characters or more (CQL2 allows ``n``). Both are one-line grammar
    rules, so the grammar text is patched rather than a parser hand-written; should a future
    release change those lines, its own parser is used as it is.
    """
    from pygeofilter.parsers.cql2_text import parser as pgf

    path = Path(pgf.__file__).with_name("grammar.lark")
    text = path.read_text()
    fixes = {'            | "NOT"i predicate                                               -> not_\n'
             '            | "NOT"i "(" predicate ")"                                       -> not_':
             '            | "NOT"i condition_1                                              -> not_',
             "attribute: /[a-zA-Z][a-zA-Z_:0-9.]+/": "attribute: /[a-zA-Z][a-zA-Z_:0-9.]*/"}
    if not all(old in text for old in fixes):
        log.warning("pygeofilter's CQL2 grammar changed; using it unpatched")
        return pgf.parser
    for old, new in fixes.items():
        text = text.replace(old, new)
    return Lark(text, parser="lalr", maybe_placeholders=False, transformer=pgf.CQLTransformer(),
                import_paths=[str(path.parent.parent)], source_path=str(path))


_UNSUPPORTED_CALL = re.compile(r"\b(T_[A-Z]+|A_[A-Z]+|S_DWITHIN|S_BEYOND|S_TOUCHES|S_CROSSES|CASEI|ACCENTI|DIV)\s*\(",
                               re.I)


def parse(text: str) -> Any:
    """The pygeofilter AST of a CQL2-text expression (syntax errors: :class:`FilterError`)."""
    if len(text) > MAX_FILTER:
        raise FilterError(f"filter longer than {MAX_FILTER} characters")
    if not text.strip():
        raise FilterError("filter is empty")
    try:
        return _parser().parse(text)
    except LarkError as exc:
        cause = getattr(exc, "orig_exc", None)
        if isinstance(cause, NgsiError):
            raise cause from None
        if (m := _UNSUPPORTED_CALL.search(text)) is not None:
            raise FilterError(f"{m.group(1).upper()}() is not supported by this server (see the CQL2 subset "
                              "in the OGC API documentation)") from None
        raise _syntax_error(text, cause if isinstance(cause, Exception) else exc) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise FilterError(f"filter is not valid CQL2-text: {str(exc)[:200]}") from None


def compile_filter(text: str, col: Collection, *, lang: str | None = None, crs: str | None = None) -> CompiledFilter:
    """``filter`` (+ ``filter-lang``, ``filter-crs``) for one collection, ready for an EntityQuery."""
    if lang not in (None, "", *LANGUAGES):
        raise FilterError(f"filter-lang {lang!r} is not supported; use cql2-text (cql2-json is not supported)")
    if crs not in (None, "", CRS84):
        raise FilterError(f"filter-crs {crs!r} is not supported; geometries in a filter are in {CRS84}")
    tree = parse(text)
    compiler = _Compiler(col)
    conjuncts = compiler.conjuncts(tree)
    geo: GeoQuery | None = None
    rest: list[QExpr] = []
    for c in conjuncts:
        if geo is None and isinstance(c, GeoTerm) and c.geo.geoproperty == LOCATION \
                and c.geo.search_bbox() is not None:
            geo = c.geo
        else:
            rest.append(c)
    attrs = None
    for c in rest:
        if isinstance(c, Comparison) or (isinstance(c, Exists) and not c.negated):   # both need the attribute
            attrs = {c.path.attr}
            break
    q = None if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return CompiledFilter(q, geo, attrs)


def _literal(v: Any, where: str) -> Any:
    """A CQL2 scalar literal as a q value (timestamps as aware UTC datetimes)."""
    if isinstance(v, datetime):
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    if isinstance(v, bool | int | float | str | date):
        return v
    raise FilterError(f"{where}: expected a string, number, boolean, TIMESTAMP or DATE literal, "
                      f"got {_describe(v)}")


def _describe(node: Any) -> str:
    if isinstance(node, ast.Attribute):
        return f"the property {node.name}"
    if isinstance(node, values.Geometry | values.Envelope):
        return "a geometry"
    if isinstance(node, values.Interval):
        return "an INTERVAL"
    if isinstance(node, ast.Function):
        return f"the function {node.name}()"
    if isinstance(node, ast.Arithmetic):
        return "arithmetic"
    return type(node).__name__


def like_regex(pattern: str) -> str:
    """A CQL2 LIKE pattern as an anchored Python regex: ``%`` any run, ``_`` one character,
    ``\\`` escapes the next character."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "(?s)^" + "".join(out) + r"\Z"


class _Compiler:
    def __init__(self, col: Collection):
        self.col = col
        self.nodes = 0

    # ---- names ---------------------------------------------------------------------------------
    def attr(self, node: Any, where: str) -> AttrPath:
        if not isinstance(node, ast.Attribute):
            raise FilterError(f"{where}: the left-hand side must be a property name, got {_describe(node)}")
        name = node.name
        if name in (GEOMETRY, "location"):
            return AttrPath(LOCATION)
        iri = self.col.iris.get(name)
        if iri is None:
            known = sorted(self.col.iris)
            listed = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
            raise FilterError(f"{name!r} is not a queryable of {self.col.id} (see its /queryables): {listed}")
        return AttrPath(iri)

    # ---- structure -----------------------------------------------------------------------------
    def conjuncts(self, tree: Any) -> list[QExpr]:
        node = self.node(tree, False)
        return list(node.parts) if isinstance(node, And) else [node]

    def node(self, n: Any, neg: bool) -> QExpr:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"filter has more than {MAX_NODES} conditions")
        if isinstance(n, ast.Not):
            return self.node(n.sub_node, not neg)
        if isinstance(n, ast.And | ast.Or):
            parts = (self.node(n.lhs, neg), self.node(n.rhs, neg))
            conj = isinstance(n, ast.And) != neg          # De Morgan
            cls = And if conj else Or
            flat: list[QExpr] = []
            for p in parts:
                flat.extend(p.parts if isinstance(p, cls) else (p,))
            return cls(tuple(flat))
        if isinstance(n, ast.Comparison):
            return self.comparison(n, neg)
        if isinstance(n, ast.Between):
            path = self.attr(n.lhs, "BETWEEN")
            lo, hi = _literal(n.low, "BETWEEN"), _literal(n.high, "BETWEEN")
            return Comparison(path, "!=" if neg != n.not_ else "==", Range(lo, hi))
        if isinstance(n, ast.Like):
            path = self.attr(n.lhs, "LIKE")
            if not isinstance(n.pattern, str):
                raise FilterError("LIKE needs a string pattern")
            if n.nocase:
                raise FilterError("case-insensitive LIKE is not supported")
            return Comparison(path, "!~=" if neg != n.not_ else "~=", like_regex(n.pattern))
        if isinstance(n, ast.In):
            path = self.attr(n.lhs, "IN")
            items = tuple(_literal(v, "IN") for v in n.sub_nodes)
            return Comparison(path, "!=" if neg != n.not_ else "==", ValueList(items))
        if isinstance(n, ast.IsNull):
            path = self.attr(n.lhs, "IS NULL")
            return Exists(path, negated=(neg == n.not_))   # IS NULL: the attribute does not exist
        if isinstance(n, ast.Include):
            return Const(neg == n.not_)
        if isinstance(n, ast.SpatialComparisonPredicate):
            return self.spatial(n.lhs, n.rhs, n.op.value, neg)
        if isinstance(n, ast.BBox):
            if n.crs not in (None, "", CRS84):
                raise FilterError(f"BBOX in CRS {n.crs!r} is not supported; use {CRS84}")
            box = values.Envelope(n.minx, n.maxx, n.miny, n.maxy)
            return self.spatial(n.lhs, box, "INTERSECTS", neg)
        raise FilterError(f"{_unsupported(n)} is not supported by this server (see the CQL2 subset in /ogc docs)")

    def comparison(self, n: Any, neg: bool) -> QExpr:
        op = n.op.value
        lhs, rhs = n.lhs, n.rhs
        if not isinstance(lhs, ast.Attribute) and isinstance(rhs, ast.Attribute):
            lhs, rhs, op = rhs, lhs, _FLIP[op]
        path = self.attr(lhs, f"comparison {op}")
        if isinstance(rhs, ast.Attribute):
            raise FilterError(f"comparing two properties ({lhs.name} {op} {rhs.name}) is not supported")
        value = _literal(rhs, f"comparison {lhs.name} {op}")
        qop = _Q_OP[op]
        return Comparison(path, _NEGATED[qop] if neg else qop, value)

    def spatial(self, lhs: Any, rhs: Any, rel: str, neg: bool) -> QExpr:
        if rel not in _SPATIAL:
            raise FilterError(f"S_{rel} is not supported; spatial predicates: "
                              + ", ".join(f"S_{r}" for r in _SPATIAL) + ", BBOX")
        georel, complement = _SPATIAL[rel]
        if not isinstance(lhs, ast.Attribute) and isinstance(rhs, ast.Attribute):
            lhs, rhs = rhs, lhs
            georel = _CONVERSE.get(georel, georel)
        path = self.attr(lhs, f"S_{rel}")
        if path.attr not in self.col.geo_attrs:
            raise FilterError(f"S_{rel}: {lhs.name} is not a geometry property of {self.col.id}")
        geom = _geometry(rhs, f"S_{rel}")
        if neg and complement is not None:
            georel, neg = complement, False
        term = GeoTerm(GeoQuery(georel, geom, path.attr), path)
        return PresentAndNot(term, path) if neg else term


def _bbox_literal(v: Any, where: str) -> values.Envelope | None:
    """CQL2's bbox literal ``BBOX(west, south, east, north)`` (pygeofilter reads it as a function call)."""
    if not (isinstance(v, ast.Function) and v.name.lower() == "bbox"):
        return None
    nums = v.arguments
    if len(nums) not in (4, 6) or not all(isinstance(n, int | float) and not isinstance(n, bool) for n in nums):
        raise FilterError(f"{where}: BBOX(...) needs 4 or 6 numbers: west, south, [min height,] east, north")
    w, s, e, n = (nums[0], nums[1], nums[2], nums[3]) if len(nums) == 4 else (nums[0], nums[1], nums[3], nums[4])
    if s > n or w > e:
        raise FilterError(f"{where}: BBOX({w}, {s}, {e}, {n}) has its south above its north or its west east "
                          "of its east")
    return values.Envelope(w, e, s, n)


def _geometry(v: Any, where: str) -> shapely.Geometry:
    v = _bbox_literal(v, where) or v
    if not isinstance(v, values.Geometry | values.Envelope):
        raise FilterError(f"{where}: the second argument must be a WKT geometry or ENVELOPE, got {_describe(v)}")
    gj = v.geometry if isinstance(v, values.Envelope) else v.geometry
    crs = gj.get("crs") if isinstance(gj, dict) else None
    if crs:
        raise FilterError(f"{where}: geometries with their own CRS (EWKT SRID) are not supported; use CRS84")
    try:
        geom = shape(gj)
    except (GEOSException, ValueError, TypeError, KeyError, IndexError) as exc:
        raise FilterError(f"{where}: not a valid geometry ({exc})") from None
    if geom.is_empty:
        raise FilterError(f"{where}: the geometry is empty")
    xmin, ymin, xmax, ymax = geom.bounds
    if not (-180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90):
        raise FilterError(f"{where}: coordinates must be longitude, latitude in CRS84 (got bounds "
                          f"{xmin}, {ymin}, {xmax}, {ymax})")
    return geom


def _unsupported(n: Any) -> str:
    if isinstance(n, ast.TemporalPredicate):
        return f"the temporal predicate T_{n.op.name}"
    if isinstance(n, ast.ArrayPredicate):
        return f"the array predicate A_{n.op.name}"
    if isinstance(n, ast.SpatialDistancePredicate):
        return f"the distance predicate {n.op.name}"
    if isinstance(n, ast.Relate):
        return "RELATE"
    if isinstance(n, ast.Exists):
        return "EXISTS"
    return _describe(n)
