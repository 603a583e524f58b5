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

scopeQ (clause 4.19; ``;`` is also accepted without parentheses, as the conformance suite
sends it)::

    Or = And *(("|" / ",") And);  And = Primary *(";" Primary);  Primary = "(" Or ")" / Scope
    Scope = "/#" / 1*("/" (Name / "+")) ["/#"]

No whitespace is allowed outside quoted strings. Errors are :class:`QuerySyntaxError`, an
:class:`errors.InvalidRequest` rendered with the problem type ``BadRequestData`` (5.7.2.4).
Regular expressions are Python ``re`` (not POSIX); as ``re`` has no timeout, patterns are
capped at :data:`MAX_PATTERN` characters and nested quantifiers such as ``(a+)+`` are refused.

Evaluation: the compared *target value* is taken from every instance of the attribute (match if
any instance matches); lists match when any member matches; ``!=`` means "present and not ==";
type mismatches never match (and count as "unequal" for ``!=``); relationships only take ``==``
and ``!=``. DateTimes compare by instant.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Iterable, Iterator
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
_NO_ATTRS: dict[str, Any] = {}
_RELATIONSHIPS = frozenset({"Relationship", "ListRelationship"})
_COMPARE = {"==": operator.eq, "!=": operator.eq, ">": operator.gt, ">=": operator.ge,
            "<": operator.lt, "<=": operator.le}
_OPERATORS = ("==", "!~=", "!=", ">=", ">", "<=", "<", "~=")      # longest match first

_NAME = re.compile(r"[^\W\d_]\w*")
_KEY = re.compile(r"\*|[\w-]+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_TOKEN = re.compile(r"""[A-Za-z][\w+.-]*:[^\s;|(),"<>\\^`{}]+|[^\W\d][\w-]*""")  # URI / bare word
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}]\)[*+{]")   # (a+)+ and friends
_TYPE_HINT = re.compile(r"[^\W\d_]\w*(?:,[^\W\d_]\w*)*:")
_SCOPE_LEVEL = re.compile(r"\+|[^\W\d_]\w*")


class QuerySyntaxError(errors.InvalidRequest):
    """A q / scopeQ expression that does not follow the grammar; ``position`` is the 0-based offset.

    An :class:`errors.InvalidRequest` (400) rendered with the problem type ``BadRequestData``,
    which clause 5.7.2.4 names for a query that is "not syntactically valid" (and which the
    conformance suite checks).
    """

    problem, title = "BadRequestData", "Invalid query"

    def __init__(self, language: str, text: str, pos: int, expected: str):
        found = repr(text[pos]) if pos < len(text) else "end of input"
        super().__init__(f"invalid {language} at position {pos}: expected {expected}, found {found}")
        self.position = pos


# --- comparing one member of a target value with one query value ----------------------------

def _datetime(v: Any) -> datetime | None:
    """A DateTime string as an aware UTC datetime (naive = UTC); None if ``v`` is not one."""
    if type(v) is not str or len(v) < 16 or v[10] != "T":
        return None
    try:
        d = datetime.fromisoformat(v)
        return d if d.tzinfo is UTC else d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _date(v: Any) -> date | None:
    try:
        return date.fromisoformat(v) if type(v) is str and len(v) == 10 else None
    except ValueError:
        return None


def _time_key(t: time) -> float:
    """Seconds since midnight, offset-adjusted so that times with offsets compare by instant."""
    off = t.utcoffset()
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6 - (off.total_seconds() if off else 0)


def _time(v: Any) -> float | None:
    try:
        return _time_key(time.fromisoformat(v)) if type(v) is str and v[2:3] == ":" and "T" not in v else None
    except ValueError:
        return None


def _kind(q: Scalar) -> tuple[Any, Any]:
    """(what a target member must be -- ``float`` for any number, ``bool``, ``str``, or a parser
    of stored temporal strings returning None on a mismatch; the query value's comparable key)."""
    t = type(q)
    if t is int or t is float:
        return float, q
    if t is datetime:
        return _datetime, q
    if t is date:
        return _date, q
    if t is time:
        return _time, _time_key(q)  # type: ignore[arg-type]
    if t is str and _DATETIME.fullmatch(q) and (d := _datetime(q)) is not None:  # type: ignore[arg-type]
        return _datetime, d         # a quoted DateTime still compares by instant
    return t, q


def _member_test(kind: Any, cmp: Callable[[Any, Any], bool], key: Any) -> Callable[[Any], bool]:
    if kind is float:               # bool is not a number here: type(), not isinstance()
        return lambda m: (type(m) is int or type(m) is float) and cmp(m, key)
    if kind is str or kind is bool:
        return lambda m: type(m) is kind and cmp(m, key)
    return lambda m: (k := kind(m)) is not None and cmp(k, key)


def _matcher(op: str, value: Scalar | Range | ValueList, alts: frozenset[str]) -> Callable[[Any], bool]:
    """The test of one target-value member (for ``!=`` / ``!~=``: the positive form)."""
    if op in ("~=", "!~="):
        search = re.compile(str(value)).search
        return lambda m: type(m) is str and search(m) is not None
    if isinstance(value, ValueList):
        tests = tuple(_matcher(op, item, alts) for item in value.items)
        return lambda m: any(t(m) for t in tests)
    if isinstance(value, Range):
        (kind, lo), (kind_hi, hi) = _kind(value.lo), _kind(value.hi)
        if kind is not kind_hi:
            return lambda m: False
        if kind is float:
            return lambda m: (type(m) is int or type(m) is float) and lo <= m <= hi
        if kind is str or kind is bool:
            return lambda m: type(m) is kind and lo <= m <= hi
        return lambda m: (k := kind(m)) is not None and lo <= k <= hi
    kind, key = _kind(value)
    if kind is str and alts:
        accepted = alts | {key}
        return lambda m: type(m) is str and m in accepted
    return _member_test(kind, _COMPARE[op], key)


# --- AST -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Range:
    """``lo..hi``, both included; only after ``==`` / ``!=``."""

    lo: Scalar
    hi: Scalar


@dataclass(frozen=True, slots=True)
class ValueList:
    """``a,b,c``: ``==`` matches any of the items, ``!=`` none of them."""

    items: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class LinkedPath:
    """The ``{...}`` of ``rel{Type1,Type2:path}`` (4.5.23): ``path`` evaluated on the entities
    the relationship points at -- only those of one of ``types`` (expanded IRIs), if any."""

    types: tuple[str, ...]
    path: AttrPath


@dataclass(frozen=True, slots=True)
class AttrPath:
    """Where the target value of a query term is.

    ``attr``: the expanded top-level attribute IRI; ``NGSILD + "createdAt"`` / ``"modifiedAt"``
    are the entity's own timestamps. ``sub``: expanded sub-attribute IRIs walked from each
    instance; a last element that is a bare meta name (:data:`META_FIELDS`, no ``:``) selects
    that field of the instance reached. ``trailing``: the unexpanded keys of ``[a.b]`` walked
    inside the value (LanguageProperty: the language, ``*`` = any). ``link``: ``attr{...}``.
    """

    attr: str
    sub: tuple[str, ...] = ()
    trailing: tuple[str, ...] = ()
    link: LinkedPath | None = None
    _walk: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _meta: str | None = field(init=False, repr=False, compare=False)
    _plain: bool = field(init=False, repr=False, compare=False)     # just an attribute name

    def __post_init__(self) -> None:
        meta = self.sub[-1] if self.sub and self.sub[-1] in META_FIELDS else None
        object.__setattr__(self, "_meta", meta)
        object.__setattr__(self, "_walk", self.sub[:-1] if meta else self.sub)
        plain = not (self.sub or self.trailing or self.link or self.attr in ENTITY_FIELDS)
        object.__setattr__(self, "_plain", plain)

    @property
    def depth(self) -> int:
        """How many relationships the path follows."""
        return 0 if self.link is None else 1 + self.link.path.depth

    def resolve(self, entity: dict[str, Any], resolve: Resolver | None = None) -> Iterator[tuple[str, Any]]:
        """``(attribute type, target value)`` for each instance that defines the target element."""
        if self.attr in ENTITY_FIELDS and not self.sub:
            if (v := entity.get(ENTITY_FIELDS[self.attr])) is not None:
                yield "Property", v
            return
        for inst in entity.get("attrs", _NO_ATTRS).get(self.attr) or ():
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
                    if type(v) is dict and (found := _languages(v, self.trailing)):
                        yield atype, found
                elif not self.trailing:
                    yield atype, v
                elif (member := _members(v, self.trailing)) is not None:
                    yield atype, member

    def _follow(self, objects: Any, resolve: Resolver) -> Iterator[tuple[str, Any]]:
        link: LinkedPath = self.link  # type: ignore[assignment]
        for oid in objects if type(objects) is list else (objects,):
            if type(oid) is dict:
                oid = oid.get("object")
            target = resolve(oid) if type(oid) is str else None
            if target is not None and (not link.types or any(t in link.types for t in target.get("type", ()))):
                yield from link.path.resolve(target, resolve)


def _languages(lang_map: dict[str, Any], trailing: tuple[str, ...]) -> list[Any]:
    if not trailing or trailing == ("*",):
        return _flatten(lang_map.values())
    want = trailing[0].lower()      # language tags are case-insensitive
    return _flatten(v for k, v in lang_map.items() if k.lower() == want) if len(trailing) == 1 else []


def _members(value: Any, keys: tuple[str, ...]) -> list[Any] | None:
    """Walk a trailing path inside a compound value (through arrays; ``*`` = any member)."""
    current = [value]
    for key in keys:
        found: list[Any] = []
        for item in _flatten(current):
            if type(item) is dict:
                if key == "*":
                    found.extend(item.values())
                elif key in item:
                    found.append(item[key])
        if not found:
            return None          # "does not result in a defined value": non-existent
        current = found
    return _flatten(current)


def _flatten(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if type(v) is list:
            out.extend(v)
        else:
            out.append(v)
    return out


class QExpr:
    """Base of the q AST nodes."""

    __slots__ = ()

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        """Does the entity satisfy the query? ``resolve(id)`` fetches the targets of linked-entity
        paths (``rel{...}``); without it those terms never match."""
        raise NotImplementedError

    def terms(self) -> Iterator[Comparison | Exists]:
        """The leaf terms, left to right."""
        yield self  # type: ignore[misc]

    def attributes(self) -> set[str]:
        """Expanded IRIs of the top-level attributes the query references."""
        return {t.path.attr for t in self.terms()}

    def link_depth(self) -> int:
        """The deepest linked-entity path (0 when no term follows a relationship)."""
        return max(t.path.depth for t in self.terms())


@dataclass(frozen=True, slots=True)
class _Junction(QExpr):
    parts: tuple[QExpr, ...]

    def terms(self) -> Iterator[Comparison | Exists]:
        for p in self.parts:
            yield from p.terms()


@dataclass(frozen=True, slots=True)
class And(_Junction):
    """``a;b``: every part matches."""

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for p in self.parts:
            if not p.matches(entity, resolve):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Or(_Junction):
    """``a|b``: some part matches."""

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        for p in self.parts:
            if p.matches(entity, resolve):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Exists(QExpr):
    """``attr``: the target element exists; ``negated``: ``!attr``, it does not."""

    path: AttrPath
    negated: bool = False

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        if self.path._plain:
            return bool(entity.get("attrs", _NO_ATTRS).get(self.path.attr)) is not self.negated
        for _ in self.path.resolve(entity, resolve):
            return not self.negated
        return self.negated


@dataclass(frozen=True, slots=True)
class Comparison(QExpr):
    """``path op value``: ``value`` is a scalar (bool, int, float, str, aware-UTC datetime, date,
    time), a :class:`Range` or a :class:`ValueList`; for ``~=`` / ``!~=`` the regex source.

    ``expanded``: @context expansions of the string query values, accepted as equal too -- on
    VocabProperty targets, or on any target when ``expanded_everywhere`` (``expandValues``).
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
        path = self.path
        if path._plain:             # the common case, without the generator of resolve()
            for inst in entity.get("attrs", _NO_ATTRS).get(path.attr) or ():
                atype = inst.get("type", "Property")
                v = inst.get(VALUE_KEY.get(atype, "value"))
                if atype == "LanguageProperty":
                    v = _languages(v, ()) if type(v) is dict else None
                if v is not None and self._check(atype, v):
                    return True
            return False
        for atype, v in path.resolve(entity, resolve):
            if v is not None and self._check(atype, v):
                return True
        return False

    def _check(self, atype: str, v: Any) -> bool:
        op = self.op
        if atype in _RELATIONSHIPS and op != "==" and op != "!=":
            return False            # 4.9: relationships only take equal / unequal
        test = self._test
        if self._alt_test is not None and (self.expanded_everywhere or atype == "VocabProperty"):
            test = self._alt_test
        members: list[Any] | tuple[Any]
        if type(v) is list:
            members = [m.get("@value") if type(m) is dict else m for m in v]
            hit = any(map(test, members))
        else:
            members = (v.get("@value") if type(v) is dict else v,)   # JSON-LD value object
            hit = test(members[0])
        if op == "!=":
            return not hit
        if op == "!~=":
            return not hit and any(type(m) is str for m in members)
        return hit


# --- parsers ---------------------------------------------------------------------------------

class _Parser:
    """Cursor, error reporting and the shared ``a;b|(c)`` grammar of the q and scopeQ parsers."""

    language: str
    or_ops: tuple[str, ...] = ("|",)
    and_node: Callable[[tuple[Any, ...]], Any]
    or_node: Callable[[tuple[Any, ...]], Any]

    def __init__(self, text: str):
        self.text, self.pos, self.depth = text, 0, 0

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
            self.fail(f"at most {MAX_DEPTH} nested levels", self.pos - 1)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def parse(self) -> Any:
        if not self.text:
            self.fail("a query term")
        node = self.disjunction()
        if not self.at_end():
            self.fail(f"{', '.join(repr(o) for o in (';',) + self.or_ops)} or end of {self.language}")
        return node

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while any(self.eat(o) for o in self.or_ops):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else self.or_node(tuple(parts))

    def conjunction(self) -> Any:
        parts = [self.primary()]
        while self.eat(";"):
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else self.and_node(tuple(parts))

    def primary(self) -> Any:
        if not self.eat("("):
            return self.term()
        self.nest()
        node = self.disjunction()
        self.expect(")")
        self.depth -= 1
        return node

    def term(self) -> Any:
        raise NotImplementedError


class _QParser(_Parser):
    language, and_node, or_node = "q", And, Or

    def __init__(self, text: str, expand: Callable[[str], str], expand_values: Collection[str] | None):
        super().__init__(text)
        self.expand, self.expand_values = expand, expand_values

    def term(self) -> QExpr:
        if self.eat("!"):
            path = self.path()
            if not self.at_end() and self.text[self.pos] not in ";|)":
                self.fail("';', '|', ')' or end of query after a '!attribute' term")
            return Exists(path, negated=True)
        m = _NAME.match(self.text, self.pos)
        raw = m.group() if m else ""          # the attribute as written, for expandValues
        path = self.path()
        if self.at_end() or self.text[self.pos] in ";|)":
            return Exists(path)
        op = next((o for o in _OPERATORS if self.peek(o)), None)
        if op is None:
            self.fail("an operator (==, !=, >, >=, <, <=, ~=, !~=), ';', '|', ')' or end of query")
        self.pos += len(op)
        if op in ("~=", "!~="):
            return Comparison(path, op, self.pattern())
        if op not in ("==", "!="):
            single, _ = self.scalar(unquoted=False)
            if self.peek("..") or self.peek(","):
                self.fail("a single value after an ordering operator (ranges and lists need == or !=)")
            return Comparison(path, op, single)
        value = self.equality_value()
        strings = {v for v in (value.items if isinstance(value, ValueList) else (value,)) if type(v) is str}
        everywhere = self.expand_values is not None and bool({path.attr, raw} & set(self.expand_values))
        if strings and (self.expand_values is None or everywhere):
            return Comparison(path, op, value, frozenset(map(self.expand, strings)) - strings, everywhere)
        return Comparison(path, op, value)

    def path(self) -> AttrPath:
        name = self.match(_NAME, "an attribute name")
        attr = NGSILD + name if name in ("createdAt", "modifiedAt") else self.expand(name)
        if self.eat("{"):
            self.nest()
            types: tuple[str, ...] = ()
            if m := _TYPE_HINT.match(self.text, self.pos):    # "T1,T2:"
                types = tuple(self.expand(t) for t in m.group()[:-1].split(","))
                self.pos = m.end()
            inner = self.path()
            self.expect("}")
            self.depth -= 1
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
            self.fail("an operator ('{...}' may only follow a plain attribute name)")
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
        """One value and its kind: string, datetime, date, time, number, bool or token (URI/word)."""
        text, start = self.text, self.pos
        value: Scalar
        try:
            if text.startswith('"', start):
                if (m := _STRING.match(text, start)) is None:
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
                self.fail("a number, quoted string, DateTime, Date or Time" + (", true, false or a URI" * unquoted))
        except (ValueError, OverflowError):
            self.fail("a valid value (malformed string, number, DateTime, Date or Time)", start)
        self.pos = m.end()
        if (not self.at_end() and text[self.pos] not in ";|),.") or (self.peek(".") and not self.peek("..")):
            self.fail("',', '..', ';', '|', ')' or end of query after the value")
        return value, kind

    def pattern(self) -> str:
        """A ``~=`` regex: a quoted string, or raw text up to ``;``/``|``/``)`` outside its groups."""
        start, text = self.pos, self.text
        if text.startswith('"', start):
            source = str(self.scalar(unquoted=False)[0])     # a quoted string: a str
            if self.peek(",") or self.peek(".."):
                self.fail("';', '|', ')' or end of query after the regular expression")
        else:
            i, depth, in_class = start, 0, False
            while i < len(text):
                c = text[i]
                if c == "\\":
                    i += 1
                elif in_class:
                    in_class = c != "]"
                elif c == "[":
                    in_class = True
                elif c == "(":
                    depth += 1
                elif depth == 0 and c in ";|)":
                    break
                elif c == ")":
                    depth -= 1
                i += 1
            self.pos = min(i, len(text))
            source = text[start:self.pos]
        if not source or len(source) > MAX_PATTERN:
            self.fail(f"a regular expression of 1 to {MAX_PATTERN} characters", start)
        if _NESTED_QUANTIFIER.search(source):
            self.fail("a regular expression without nested quantifiers such as (a+)+", start)
        try:
            re.compile(source)
        except (re.error, OverflowError, RecursionError, ValueError) as e:
            self.fail(f"a valid regular expression ({e})", start)
        return source


def parse_q(text: str, expand: Callable[[str], str], *, expand_values: Collection[str] | None = None) -> QExpr:
    """Parse a URL-decoded q expression, expanding attribute names with ``expand``.

    ``expand_values``: the request's ``expandValues`` (attribute names as written, or IRIs).
    None: string values compared with a VocabProperty also match their expansion. Given: only
    the listed attributes' string values are expanded (for any attribute type); the others are
    compared literally. Raises :class:`QuerySyntaxError`.
    """
    node: QExpr = _QParser(text, expand, expand_values).parse()
    return node


# --- scopeQ (clause 4.19) --------------------------------------------------------------------

class ScopeExpr:
    """Base of the scopeQ AST nodes."""

    __slots__ = ()

    def matches(self, entity: dict[str, Any]) -> bool:
        """Does the entity's ``scope`` (a list of scope paths, or absent) satisfy the query?"""
        scopes: Any = entity.get("scope")
        return bool(scopes) and self.matches_scopes((scopes,) if type(scopes) is str else scopes)

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ScopeTerm(ScopeExpr):
    """``/a/+/c`` (``+``: any one level); ``descendants``: ``/a/#``, the scope and all below it.
    No levels with ``descendants`` is ``/#``: any (non-empty) scope."""

    levels: tuple[str, ...]
    descendants: bool = False
    _rx: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        body = "".join("/[^/]+" if lv == "+" else "/" + re.escape(lv) for lv in self.levels)
        object.__setattr__(self, "_rx", re.compile(body + ("(?:/.*)?" if self.descendants else "")))

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        full = self._rx.fullmatch
        for s in scopes:
            if type(s) is str and full(s) is not None:
                return True
        return False


@dataclass(frozen=True, slots=True)
class ScopeAnd(ScopeExpr):
    """``(a;b)``: the entity has scopes matching every part."""

    parts: tuple[ScopeExpr, ...]

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        return all(p.matches_scopes(scopes) for p in self.parts)


@dataclass(frozen=True, slots=True)
class ScopeOr(ScopeExpr):
    """``a|b`` or ``a,b``: the entity has a scope matching some part."""

    parts: tuple[ScopeExpr, ...]

    def matches_scopes(self, scopes: Collection[str]) -> bool:
        return any(p.matches_scopes(scopes) for p in self.parts)


class _ScopeParser(_Parser):
    language, or_ops, and_node, or_node = "scopeQ", ("|", ","), ScopeAnd, ScopeOr

    def term(self) -> ScopeExpr:
        self.expect("/")
        levels: list[str] = []
        while not self.eat("#"):
            levels.append(self.match(_SCOPE_LEVEL, "a scope level (a name, '+' or '#')"))
            if not self.eat("/"):
                return ScopeTerm(tuple(levels))
        return ScopeTerm(tuple(levels), True)


def parse_scope_q(text: str) -> ScopeExpr:
    """Parse a URL-decoded scopeQ expression. Raises :class:`QuerySyntaxError`."""
    node: ScopeExpr = _ScopeParser(text).parse()
    return node
