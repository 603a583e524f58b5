"""The NGSI-LD Query Language (``q``, ETSI GS CIM 009 V1.9.1 clause 4.9) and the Scope Query
Language (``scopeQ``, clause 4.19): a parser and an evaluator over the internal entity shape
(:mod:`urbanmim.ngsild.entity`).

Why hand-written: no maintained Python library implements the NGSI-LD q grammar, and the grammar
is small. A recursive-descent parser over the raw string gives exact error positions (the
conformance suite sends malformed queries and expects 400) and no dependency.

Grammar accepted (clause 4.9 ABNF, with the extensions noted)::

    Query      = Or
    Or         = And *("|" And)                   ; AND binds tighter than OR
    And        = Primary *(";" Primary)
    Primary    = "(" Or ")" / Term                ; nesting allowed (spec EXAMPLE 6 nests)
    Term       = "!" Path                         ; extension: attribute does not exist
               / Path [Op Value]                  ; bare Path: attribute exists
    Path       = Name "{" [Type *("," Type) ":"] Path "}"     ; linked entity (4.5.23)
               / Name *("." Name) *("[" Key *("." Key) "]")   ; sub-attrs/meta, trailing path
    Name       = unicodeLetter *(unicodeLetter / unicodeNumber / "_")
    Key        = "*" / 1*(unicodeLetter / unicodeNumber / "_" / "-")
    Op         = "==" / "!=" / ">=" / ">" / "<=" / "<" / "~=" / "!~="
    Value      = (after ==, !=)  Scalar / Range / ValueList / URI / bare word
               / (after >, >=, <, <=)  Number / String / DateTime / Date / Time
               / (after ~=, !~=)  quoted String, or raw text up to ";" / "|" / an unbalanced ")"

No whitespace is allowed outside quoted strings. Errors are :class:`QuerySyntaxError`, an
:class:`errors.InvalidRequest` rendered with the problem type ``BadRequestData`` (5.7.2.4).

Evaluation: the compared *target value* is taken from every instance of the attribute (match if
any instance matches); lists match when any member matches; ``!=`` means "present and not ==";
type mismatches never match (and count as "unequal" for ``!=``); relationships only take ``==``
and ``!=``. DateTimes compare by instant.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, NoReturn

from urbanmim import errors
from urbanmim.ngsild.entity import NGSILD, VALUE_KEY

Scalar = bool | int | float | str | datetime | date | time
Resolver = Callable[[str], "dict[str, Any] | None"]

META_FIELDS = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
ENTITY_FIELDS = {NGSILD + "createdAt": "createdAt", NGSILD + "modifiedAt": "modifiedAt"}
MAX_PATTERN = 256   # characters of a ~= regular expression
MAX_DEPTH = 32      # nesting of parentheses / linked-entity braces
_RELATIONSHIPS = frozenset({"Relationship", "ListRelationship"})
_ORDERING = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_OPERATORS = ("==", "!~=", "!=", ">=", ">", "<=", "<", "~=")      # longest match first

_NAME = re.compile(r"[^\W\d_]\w*")
_KEY = re.compile(r"\*|[\w-]+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_TOKEN = re.compile(r"""[^\W\d][^\s;|(),"<>\\^`{}]*""")   # URI or bare word, unquoted
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}]\)[*+{]")   # (a+)+ and friends
_SCOPE_LEVEL = re.compile(r"\+|[^\W\d_]\w*")


class QuerySyntaxError(errors.InvalidRequest):
    """A q / scopeQ expression that does not follow the grammar.

    An :class:`errors.InvalidRequest` (400) whose problem type is ``BadRequestData``: clause
    5.7.2.4 names that type for "the query ... not syntactically valid", and the conformance
    suite checks it. ``position`` is the 0-based character offset of the error.
    """

    problem, title = "BadRequestData", "Invalid query"

    def __init__(self, language: str, text: str, pos: int, expected: str):
        found = repr(text[pos]) if pos < len(text) else "end of input"
        super().__init__(f"invalid {language} at position {pos}: expected {expected}, found {found}")
        self.position = pos


# --- temporal values: parse stored strings once per comparison ------------------------------

def _datetime(v: Any) -> datetime | None:
    """A DateTime string as an aware datetime (naive = UTC); None if ``v`` is not one."""
    if type(v) is not str or len(v) < 16 or v[10] != "T":
        return None
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _date(v: Any) -> date | None:
    if type(v) is not str or len(v) != 10:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        return None


def _time_key(t: time) -> float:
    """Seconds since midnight UTC (offset-adjusted, so times with offsets compare by instant)."""
    off = t.utcoffset()
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6 - (off.total_seconds() if off else 0)


def _time(v: Any) -> float | None:
    if type(v) is not str or len(v) < 5 or v[2] != ":" or "T" in v:
        return None
    try:
        return _time_key(time.fromisoformat(v))
    except ValueError:
        return None


def _number(v: Any) -> int | float | None:
    return v if type(v) is int or type(v) is float else None


def _boolean(v: Any) -> bool | None:
    return v if type(v) is bool else None


def _string(v: Any) -> str | None:
    return v if type(v) is str else None


def _coercer(q: Scalar) -> tuple[Callable[[Any], Any], Any]:
    """(member -> comparable key or None, the query value's key) for one query scalar."""
    t = type(q)
    if t is bool:
        return _boolean, q
    if t is int or t is float:
        return _number, q
    if t is datetime:
        return _datetime, q
    if t is date:
        return _date, q
    if t is time:
        return _time, _time_key(q)   # type: ignore[arg-type]
    if _DATETIME.fullmatch(q) and (d := _datetime(q)) is not None:    # type: ignore[arg-type]
        return _datetime, d          # a quoted DateTime still compares by instant
    return _string, q


def _matcher(op: str, value: Scalar | Range | ValueList, alts: frozenset[str]) -> Callable[[Any], bool]:
    """A test on one member of the target value (the operator's positive form)."""
    if op in ("~=", "!~="):
        rx = re.compile(value)   # type: ignore[arg-type]
        return lambda m: type(m) is str and rx.search(m) is not None
    if isinstance(value, ValueList):
        tests = tuple(_matcher(op, item, alts) for item in value.items)
        return lambda m: any(t(m) for t in tests)
    if isinstance(value, Range):
        (coerce, lo), (coerce_hi, hi) = _coercer(value.lo), _coercer(value.hi)
        if coerce is not coerce_hi:
            return lambda m: False
        return lambda m: (k := coerce(m)) is not None and lo <= k <= hi
    coerce, key = _coercer(value)
    if op in _ORDERING:
        cmp = _ORDERING[op]
        return lambda m: (k := coerce(m)) is not None and cmp(k, key)
    if coerce is _string and alts:
        accepted = alts | {key}
        return lambda m: type(m) is str and m in accepted
    return lambda m: (k := coerce(m)) is not None and k == key


# --- AST -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Range:
    """``lo..hi`` (both included); only after ``==`` / ``!=``."""

    lo: Scalar
    hi: Scalar


@dataclass(frozen=True, slots=True)
class ValueList:
    """``a,b,c``: ``==`` matches any of them, ``!=`` none of them."""

    items: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class LinkedPath:
    """The ``{...}`` of ``rel{Type1,Type2:path}``: ``path`` evaluated on the entities the
    relationship points at (only those of one of ``types``, expanded IRIs, when given)."""

    types: tuple[str, ...]
    path: AttrPath


@dataclass(frozen=True, slots=True)
class AttrPath:
    """Where the target value of a query term is.

    ``attr`` is the expanded top-level attribute IRI (``NGSILD + "createdAt"`` / ``"modifiedAt"``
    mean the entity's own timestamps). ``sub`` are expanded sub-attribute IRIs walked from the
    attribute instance; a last element that is a bare meta name (``observedAt``, ``createdAt``,
    ``modifiedAt``, ``unitCode``, ``datasetId`` -- no ``:``) selects that instance field instead.
    ``trailing`` are the unexpanded keys of ``[a.b]``/``[a][b]`` walked inside the value (for a
    LanguageProperty the first one is the language, ``*`` = any). ``link`` is set for ``attr{...}``.
    """

    attr: str
    sub: tuple[str, ...] = ()
    trailing: tuple[str, ...] = ()
    link: LinkedPath | None = None
    _walk: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _meta: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        meta = self.sub[-1] if self.sub and self.sub[-1] in META_FIELDS else None
        object.__setattr__(self, "_meta", meta)
        object.__setattr__(self, "_walk", self.sub[:-1] if meta else self.sub)

    @property
    def depth(self) -> int:
        """How many relationships the path follows (0 without ``{...}``)."""
        return 0 if self.link is None else 1 + self.link.path.depth

    def resolve(self, entity: dict[str, Any], resolve: Resolver | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ``(attribute type, target value)`` per instance that defines the target element."""
        if self.attr in ENTITY_FIELDS and not self.sub and not self.trailing:
            v = entity.get(ENTITY_FIELDS[self.attr])
            if v is not None:
                yield "Property", v
            return
        attrs = entity.get("attrs")
        insts = attrs.get(self.attr) if attrs else None
        if not insts:
            return
        for inst in (insts,) if type(insts) is dict else insts:
            node = inst
            for key in self._walk:
                node = node.get(key)
                if type(node) is not dict:
                    break
            else:
                if self._meta is not None:
                    if (v := node.get(self._meta)) is not None:
                        yield "Property", v
                    continue
                atype = node.get("type", "Property")
                v = node.get(VALUE_KEY.get(atype, "value"))
                if self.link is not None:
                    if resolve is not None and atype in _RELATIONSHIPS:
                        yield from self._follow(v, resolve)
                elif atype == "LanguageProperty":
                    if type(v) is dict and (found := _languages(v, self.trailing)) is not None:
                        yield atype, found
                elif not self.trailing:
                    yield atype, v
                elif (found := _member(v, self.trailing)) is not None:
                    yield atype, found

    def _follow(self, objects: Any, resolve: Resolver) -> Iterator[tuple[str, Any]]:
        link = self.link
        assert link is not None
        for oid in objects if type(objects) is list else (objects,):
            if type(oid) is dict:
                oid = oid.get("object")
            target = resolve(oid) if type(oid) is str else None
            if target is not None and (not link.types or set(link.types) & set(target.get("type", ()))):
                yield from link.path.resolve(target, resolve)


def _languages(lang_map: dict[str, Any], trailing: tuple[str, ...]) -> list[Any] | None:
    if len(trailing) > 1:
        return None
    if trailing and trailing[0] != "*":
        want = trailing[0].lower()
        picked = [v for k, v in lang_map.items() if k.lower() == want]
    else:
        picked = list(lang_map.values())
    out: list[Any] = []
    for v in picked:
        out.extend(v) if type(v) is list else out.append(v)
    return out or None


def _member(value: Any, keys: tuple[str, ...]) -> list[Any] | None:
    """Walk a trailing path in a compound value (through arrays; ``*`` = any member)."""
    current = [value]
    for key in keys:
        found = []
        for node in current:
            for item in node if type(node) is list else (node,):
                if type(item) is dict:
                    if key == "*":
                        found.extend(item.values())
                    elif key in item:
                        found.append(item[key])
        if not found:
            return None
        current = found
    out: list[Any] = []
    for v in current:
        out.extend(v) if type(v) is list else out.append(v)
    return out


class QExpr:
    """Base of the q AST nodes."""

    __slots__ = ()

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        """Does the entity satisfy the query? ``resolve(id)`` fetches linked entities for
        ``rel{...}`` paths; without it such terms never match."""
        raise NotImplementedError

    def terms(self) -> Iterator[Comparison | Exists]:
        """The leaf terms, left to right."""
        raise NotImplementedError

    def attributes(self) -> set[str]:
        """Expanded IRIs of the top-level attributes the query references."""
        return {t.path.attr for t in self.terms()}

    def link_depth(self) -> int:
        """The deepest linked-entity path (0 when the query follows no relationship)."""
        return max(t.path.depth for t in self.terms())

    def to_text(self, compact: Callable[[str], str] = lambda iri: iri) -> str:
        """Render back to q syntax, compacting IRIs with ``compact`` (parses to an equal AST)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class And(QExpr):
    """``a;b``: every part matches."""

    parts: tuple[QExpr, ...]

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for p in self.parts:
            if not p.matches(entity, resolve):
                return False
        return True

    def terms(self) -> Iterator[Comparison | Exists]:
        for p in self.parts:
            yield from p.terms()

    def to_text(self, compact: Callable[[str], str] = lambda iri: iri) -> str:
        return ";".join(_grouped(p, compact) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Or(QExpr):
    """``a|b``: some part matches."""

    parts: tuple[QExpr, ...]

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for p in self.parts:
            if p.matches(entity, resolve):
                return True
        return False

    def terms(self) -> Iterator[Comparison | Exists]:
        for p in self.parts:
            yield from p.terms()

    def to_text(self, compact: Callable[[str], str] = lambda iri: iri) -> str:
        return "|".join(_grouped(p, compact) for p in self.parts)


def _grouped(node: QExpr, compact: Callable[[str], str]) -> str:
    text = node.to_text(compact)
    return f"({text})" if isinstance(node, And | Or) else text


@dataclass(frozen=True, slots=True)
class Exists(QExpr):
    """``attr`` (the target element exists) or, ``negated``, ``!attr`` (it does not)."""

    path: AttrPath
    negated: bool = False

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for _ in self.path.resolve(entity, resolve):
            return not self.negated
        return self.negated

    def terms(self) -> Iterator[Comparison | Exists]:
        yield self

    def to_text(self, compact: Callable[[str], str] = lambda iri: iri) -> str:
        return ("!" if self.negated else "") + _path_text(self.path, compact)


@dataclass(frozen=True, slots=True)
class Comparison(QExpr):
    """``path op value``. ``value`` is a scalar (bool, int, float, str, aware-UTC datetime, date,
    time), a :class:`Range` or a :class:`ValueList`; for ``~=`` / ``!~=`` it is the regex source.

    ``expanded`` holds the @context expansions of the string query values; they are accepted as
    equal too -- for VocabProperty targets only, or for any target when ``expanded_everywhere``
    (the attribute was listed in ``expandValues``).
    """

    path: AttrPath
    op: str
    value: Scalar | Range | ValueList
    expanded: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    expanded_everywhere: bool = field(default=False, compare=False, repr=False)
    _test: Callable[[Any], bool] = field(init=False, repr=False, compare=False)
    _alt_test: Callable[[Any], bool] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _matcher(self.op, self.value, frozenset()))
        alt = _matcher(self.op, self.value, self.expanded) if self.expanded else None
        object.__setattr__(self, "_alt_test", alt)

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for atype, v in self.path.resolve(entity, resolve):
            if v is not None and self._check(atype, v):
                return True
        return False

    def _check(self, atype: str, v: Any) -> bool:
        op = self.op
        if atype in _RELATIONSHIPS and op != "==" and op != "!=":
            return False
        test = self._test
        if self._alt_test is not None and (self.expanded_everywhere or atype == "VocabProperty"):
            test = self._alt_test
        hit = any_str = False
        for m in v if type(v) is list else (v,):
            if type(m) is dict:
                m = m.get("@value")       # a JSON-LD typed value, e.g. {"@type": "DateTime", ...}
            any_str = any_str or type(m) is str
            if test(m):
                hit = True
                break
        if op == "!=":
            return not hit
        if op == "!~=":
            return any_str and not hit
        return hit

    def terms(self) -> Iterator[Comparison | Exists]:
        yield self

    def to_text(self, compact: Callable[[str], str] = lambda iri: iri) -> str:
        return _path_text(self.path, compact) + self.op + _value_text(self.value)


def _path_text(path: AttrPath, compact: Callable[[str], str]) -> str:
    text = ENTITY_FIELDS.get(path.attr) or compact(path.attr)
    if path.link is not None:
        hint = ",".join(compact(t) for t in path.link.types)
        return f"{text}{{{hint + ':' if hint else ''}{_path_text(path.link.path, compact)}}}"
    for s in path.sub:
        text += "." + (s if s in META_FIELDS else compact(s))
    return text + (f"[{'.'.join(path.trailing)}]" if path.trailing else "")


def _value_text(v: Scalar | Range | ValueList) -> str:
    if isinstance(v, Range):
        return _value_text(v.lo) + ".." + _value_text(v.hi)
    if isinstance(v, ValueList):
        return ",".join(_value_text(i) for i in v.items)
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is str:
        return json.dumps(v, ensure_ascii=False)
    if type(v) is datetime:
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return v.isoformat() if isinstance(v, date | time) else repr(v)


# --- parsers ---------------------------------------------------------------------------------

class _Parser:
    """Shared cursor and error reporting of the q and scopeQ parsers."""

    def __init__(self, text: str, language: str):
        self.text, self.pos, self.language, self.depth = text, 0, language, 0

    def fail(self, expected: str, pos: int | None = None) -> NoReturn:
        raise QuerySyntaxError(self.language, self.text, self.pos if pos is None else pos, expected)

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def eat(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str) -> None:
        if not self.eat(s):
            self.fail(repr(s))

    def match(self, rx: re.Pattern[str], expected: str) -> str:
        m = rx.match(self.text, self.pos)
        if m is None:
            self.fail(expected)
        self.pos = m.end()
        return m.group()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"at most {MAX_DEPTH} levels of nesting")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)


class _QParser(_Parser):
    def __init__(self, text: str, expand: Callable[[str], str], expand_values: Collection[str] | None):
        super().__init__(text, "q")
        self.expand, self.expand_values = expand, expand_values

    def query(self) -> QExpr:
        if not self.text:
            self.fail("a query term")
        node = self.disjunction()
        if not self.at_end():
            self.fail("';', '|' or end of query" if self.depth == 0 else "')'")
        return node

    def disjunction(self) -> QExpr:
        parts = [self.conjunction()]
        while self.eat("|"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self) -> QExpr:
        parts = [self.primary()]
        while self.eat(";"):
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def primary(self) -> QExpr:
        if not self.eat("("):
            return self.term()
        self.nest()
        node = self.disjunction()
        self.expect(")")
        self.depth -= 1
        return node

    def term(self) -> QExpr:
        if self.eat("!"):
            path = self.path()
            if not self.at_end() and self.text[self.pos] not in ";|)":
                self.fail("';', '|', ')' or end of query after a '!attribute' term")
            return Exists(path, negated=True)
        path = self.path()
        if self.at_end() or self.text[self.pos] in ";|)":
            return Exists(path)
        op = next((o for o in _OPERATORS if self.peek(o)), None)
        if op is None:
            self.fail("an operator (==, !=, >, >=, <, <=, ~=, !~=), ';', '|', ')' or end of query")
        self.pos += len(op)
        if op in ("~=", "!~="):
            return Comparison(path, op, self.pattern())
        if op in _ORDERING:
            start = self.pos
            value, kind = self.scalar(unquoted=False)
            if self.peek("..") or self.peek(","):
                self.fail("a single value after an ordering operator (ranges and lists need == or !=)")
            if kind == "bool":
                self.fail("a number, quoted string, DateTime, Date or Time", start)
            return Comparison(path, op, value)
        value = self.equality_value()
        strings = [v for v in (value.items if isinstance(value, ValueList) else (value,)) if type(v) is str]
        everywhere = self.expand_values is not None and bool(
            {path.attr, self.raw_name(path)} & set(self.expand_values))
        if strings and (self.expand_values is None or everywhere):
            return Comparison(path, op, value, frozenset(map(self.expand, strings)) - set(strings), everywhere)
        return Comparison(path, op, value)

    def raw_name(self, path: AttrPath) -> str:
        return ENTITY_FIELDS.get(path.attr) or self.text[:0]   # placeholder, replaced below

    def path(self) -> AttrPath:
        start = self.pos
        name = self.match(_NAME, "an attribute name")
        self.last_name = name
        attr = NGSILD + name if name in ("createdAt", "modifiedAt") else self.expand(name)
        if self.eat("{"):
            self.nest()
            types: tuple[str, ...] = ()
            save = self.pos
            first = self.match(_NAME, "an entity type or attribute name")
            if self.peek(",") or self.peek(":"):
                names = [first]
                while self.eat(","):
                    names.append(self.match(_NAME, "an entity type"))
                self.expect(":")
                types = tuple(self.expand(t) for t in names)
            else:
                self.pos = save
            inner = self.path()
            self.expect("}")
            self.depth -= 1
            self.last_name = name
            return AttrPath(attr, link=LinkedPath(types, inner))
        sub = []
        while self.eat("."):
            s = self.match(_NAME, "a sub-attribute name after '.'")
            sub.append(s if s in META_FIELDS else self.expand(s))
        trailing = []
        while self.eat("["):
            trailing.append(self.match(_KEY, "a member name (or '*') in '[...]'"))
            while self.eat("."):
                trailing.append(self.match(_KEY, "a member name after '.'"))
            self.expect("]")
        if self.peek("{"):
            self.fail("an operator: '{...}' may only follow a plain attribute name", self.pos)
        del start
        return AttrPath(attr, tuple(sub), tuple(trailing))

    def equality_value(self) -> Scalar | Range | ValueList:
        start = self.pos
        first, kind = self.scalar(unquoted=True)
        if self.eat(".."):
            if kind in ("bool", "token"):
                self.fail("a number, quoted string, DateTime, Date or Time before '..'", start)
            hi, _ = self.scalar(unquoted=False)
            if self.peek("..") or self.peek(","):
                self.fail("';', '|', ')' or end of query after a range")
            return Range(first, hi)
        if not self.peek(","):
            return first
        items = [first]
        while self.eat(","):
            items.append(self.scalar(unquoted=True)[0])
        if self.peek(".."):
            self.fail("',', ';', '|', ')' or end of query (a list cannot hold ranges)")
        return ValueList(tuple(items))

    def scalar(self, unquoted: bool) -> tuple[Scalar, str]:
        """One value and its kind: number, string, datetime, date, time, bool or token."""
        text, start = self.text, self.pos
        value: Scalar
        try:
            if text.startswith('"', start):
                m = _STRING.match(text, start)
                if m is None:
                    self.fail("a closing '\"' for the string")
                value, kind = json.loads(m.group()), "string"
            elif m := _DATETIME.match(text, start):
                value, kind = datetime.fromisoformat(m.group()), "datetime"
                value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            elif m := _DATE.match(text, start):
                value, kind = date.fromisoformat(m.group()), "date"
            elif m := _TIME.match(text, start):
                value, kind = time.fromisoformat(m.group()), "time"
            elif m := _NUMBER.match(text, start):
                is_float = m.group(1) is not None or m.group(2) is not None
                value, kind = (float(m.group()) if is_float else int(m.group())), "number"
                if value in (float("inf"), float("-inf")):
                    raise ValueError("number out of range")
            elif unquoted and (m := _TOKEN.match(text, start)):
                token = m.group()
                value, kind = (token == "true", "bool") if token in ("true", "false") else (token, "token")
            else:
                self.fail("a number, quoted string, DateTime, Date or Time"
                          + (", true, false or a URI" if unquoted else ""))
        except ValueError:
            self.fail("a valid value (malformed string, number, DateTime, Date or Time)", start)
        self.pos = m.end()
        if not self.at_end() and text[self.pos] not in ";|),." or (self.peek(".") and not self.peek("..")):
            self.fail("',', '..', ';', '|', ')' or end of query after the value")
        return value, kind

    def pattern(self) -> str:
        start, text = self.pos, self.text
        if text.startswith('"', start):
            m = _STRING.match(text, start)
            if m is None:
                self.fail("a closing '\"' for the regular expression")
            try:
                source = json.loads(m.group())
            except ValueError:
                self.fail("a valid JSON string", start)
            self.pos = m.end()
            if not self.at_end() and text[self.pos] not in ";|)":
                self.fail("';', '|', ')' or end of query after the regular expression")
        else:
            i, depth, in_class = start, 0, False
            while i < len(text):
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if in_class:
                    in_class = c != "]"
                elif c == "[":
                    in_class = True
                elif c == "(":
                    depth += 1
                elif c == ")" and depth == 0 or c in ";|" and depth == 0:
                    break
                elif c == ")":
                    depth -= 1
                i += 1
            self.pos = min(i, len(text))
            source = text[start:self.pos]
        if not source:
            self.fail("a regular expression", start)
        if len(source) > MAX_PATTERN:
            self.fail(f"a regular expression of at most {MAX_PATTERN} characters", start)
        if _NESTED_QUANTIFIER.search(source):
            self.fail("a regular expression without nested quantifiers such as (a+)+", start)
        try:
            re.compile(source)
        except (re.error, OverflowError, RecursionError, ValueError) as e:
            self.fail(f"a valid regular expression ({e})", start)
        return source


def parse_q(text: str, expand: Callable[[str], str], *,
            expand_values: Collection[str] | None = None) -> QExpr:
    """Parse a (URL-decoded) q expression; attribute names are expanded with ``expand``.

    ``expand_values`` is the request's ``expandValues`` (attribute names as written, or their
    IRIs). When it is None, string values compared with a VocabProperty also match their
    expansion; when given, only the listed attributes get their string values expanded (for any
    attribute type) and the others are compared literally. Raises :class:`QuerySyntaxError`.
    """
    parser = _QParser(text, expand, expand_values)
    return parser.query()


# --- scopeQ ----------------------------------------------------------------------------------

class ScopeExpr:
    """Base of the scopeQ AST nodes."""

    __slots__ = ()

    def matches(self, entity: dict[str, Any]) -> bool:
        """Does the entity's ``scope`` (list of scope paths, or absent) satisfy the query?"""
        scopes = entity.get("scope")
        if not scopes:
            return False
        return self.matches_scopes((scopes,) if type(scopes) is str else scopes)

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        raise NotImplementedError

    def to_text(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ScopeTerm(ScopeExpr):
    """``/a/+/c`` (``levels``, ``+`` = any one level), with ``descendants`` ``/a/#`` (the scope
    and everything below it). No levels with ``descendants`` is ``/#``: any scope at all."""

    levels: tuple[str, ...]
    descendants: bool = False
    _rx: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        body = "".join("/[^/]+" if lv == "+" else "/" + re.escape(lv) for lv in self.levels)
        object.__setattr__(self, "_rx", re.compile(body + ("(?:/.*)?" if self.descendants else "")))

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        full = self._rx.fullmatch
        for s in scopes:
            if type(s) is str and full(s):
                return True
        return False

    def to_text(self) -> str:
        return "".join("/" + lv for lv in self.levels) + ("/#" if self.descendants else "")


@dataclass(frozen=True, slots=True)
class ScopeAnd(ScopeExpr):
    """``(a;b)``: the entity has scopes matching every part."""

    parts: tuple[ScopeExpr, ...]

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        return all(p.matches_scopes(scopes) for p in self.parts)

    def to_text(self) -> str:
        return "(" + ";".join(p.to_text() for p in self.parts) + ")"


@dataclass(frozen=True, slots=True)
class ScopeOr(ScopeExpr):
    """``a|b`` (or ``a,b``): the entity has a scope matching some part."""

    parts: tuple[ScopeExpr, ...]

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        return any(p.matches_scopes(scopes) for p in self.parts)

    def to_text(self) -> str:
        return "(" + "|".join(p.to_text() for p in self.parts) + ")"


class _ScopeParser(_Parser):
    def query(self) -> ScopeExpr:
        if not self.text:
            self.fail("a scope starting with '/'")
        node = self.disjunction()
        if not self.at_end():
            self.fail("'/', ';', '|', ',' or end of scopeQ")
        return node

    def disjunction(self) -> ScopeExpr:
        parts = [self.conjunction()]
        while self.eat("|") or self.eat(","):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else ScopeOr(tuple(parts))

    def conjunction(self) -> ScopeExpr:
        parts = [self.primary()]
        while self.eat(";"):
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else ScopeAnd(tuple(parts))

    def primary(self) -> ScopeExpr:
        if self.eat("("):
            self.nest()
            node = self.disjunction()
            self.expect(")")
            self.depth -= 1
            return node
        self.expect("/")
        if self.eat("#"):
            return ScopeTerm((), True)
        levels = [self.match(_SCOPE_LEVEL, "a scope level (a name or '+')")]
        while self.eat("/"):
            if self.eat("#"):
                return ScopeTerm(tuple(levels), True)
            levels.append(self.match(_SCOPE_LEVEL, "a scope level (a name, '+' or '#')"))
        return ScopeTerm(tuple(levels))


def parse_scope_q(text: str) -> ScopeExpr:
    """Parse a (URL-decoded) scopeQ expression. Raises :class:`QuerySyntaxError`."""
    return _ScopeParser(text, "scopeQ").query()
