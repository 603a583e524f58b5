"""A policy evaluator for a documented subset of ODRL 2.2, written for this platform (no ``eval``).

Why our own and not a general ODRL engine: an access decision runs for every entity of
every query, notification and temporal read, so it must be a few dictionary look-ups on
policies parsed once; and a general engine would accept policies whose meaning the
platform cannot enforce. Here a policy either parses into the subset below — and then
means exactly what ``docs/sharing.md`` says — or is refused with a 400 naming the member.

The subset (compact JSON of the ODRL 2.2 JSON-LD context; ``odrl:`` prefixes accepted):

* policy ``@type`` Offer, Agreement or Set; ``uid``, ``assigner``, ``assignee``; a policy-level
  ``target`` is inherited by rules without one; ``conflict`` only ``prohibit``;
* rules ``permission`` (with ``duty``: ``attribute`` or ``inform``) and ``prohibition``;
* actions ``use`` ⊃ {``read``, ``distribute``, ``aggregate``} (ODRL's ``includedIn``);
* target = an *entity selection* (:class:`Asset`): entity types, an id pattern, attributes;
* constraints on ``purpose`` (DPV, hierarchical ``isA``), ``dateTime``, ``spatial``
  (``isPartOf`` an area) and ``count`` (reads under the policy), logical ``and``/``or``/``xone``.

Semantics: **default deny**; a request is permitted when a permission's target, action and
constraints all hold; **prohibitions win** (an applicable prohibition of the whole entity
denies, one of some attributes hides them). A constraint that cannot be decided (no purpose
stated, entity without location) fails a permission and *applies* a prohibition: in doubt
the stricter reading wins. Every decision carries the rules that decided it and the
constraints that failed (:class:`Result`).

Policies are parsed by :mod:`urbanmim.sharing.odrl_parse`; this module holds the model and
the evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import shapely
from shapely.geometry import shape

from urbanmim.ngsild.entity import LOCATION, Entity, default_instance, value_of
from urbanmim.sharing import purposes

ACTIONS = ("use", "read", "distribute", "aggregate")
# ODRL 2.2 common vocabulary: read, distribute and aggregate are odrl:includedIn odrl:use
INCLUDED_IN: dict[str, frozenset[str]] = {
    "use": frozenset(ACTIONS), "read": frozenset({"read"}),
    "distribute": frozenset({"distribute"}), "aggregate": frozenset({"aggregate"}),
}
DUTIES = ("attribute", "inform")
LEFT_OPERANDS = ("purpose", "dateTime", "spatial", "count")
OPERATORS: dict[str, tuple[str, ...]] = {
    "purpose": ("eq", "neq", "isA", "isAnyOf", "isNoneOf"),
    "dateTime": ("eq", "neq", "lt", "lteq", "gt", "gteq"),
    "spatial": ("isPartOf",),
    "count": ("eq", "neq", "lt", "lteq", "gt", "gteq"),
}
LOGICAL = ("and", "or", "xone")
POLICY_TYPES = ("Offer", "Agreement", "Set")

Tri = bool | None          # a constraint holds, fails, or cannot be decided (None)


@dataclass(frozen=True)
class Asset:
    """What a rule is about: entities of one of ``types`` (expanded IRIs) whose id matches
    ``id_pattern``; of those, ``attributes`` (expanded IRIs; None = every attribute)."""

    types: frozenset[str] = frozenset()
    id_pattern: str | None = None
    attributes: frozenset[str] | None = None
    uid: str | None = None
    _re: re.Pattern[str] | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.id_pattern is not None and self._re is None:
            object.__setattr__(self, "_re", re.compile(self.id_pattern))

    def matches(self, entity: Entity) -> bool:
        if self.types and self.types.isdisjoint(entity.get("type") or ()):
            return False
        return self._re is None or self._re.search(entity["id"]) is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"@type": "urbanmim:EntitySelection"}
        if self.uid:
            out["uid"] = self.uid
        if self.types:
            out["entityType"] = sorted(self.types)
        if self.id_pattern is not None:
            out["idPattern"] = self.id_pattern
        if self.attributes is not None:
            out["attributes"] = sorted(self.attributes)
        return out


@dataclass(frozen=True)
class Constraint:
    """An atomic constraint ``leftOperand operator rightOperand``; ``right`` is already parsed
    (purposes as a tuple of CURIEs, a datetime, a Shapely area, an int)."""

    left: str
    op: str
    right: Any
    raw: Any                 # the rightOperand as written (explanations, round trip)
    path: str                # where it was written, e.g. "permission[0].constraint[1]"

    def to_json(self) -> dict[str, Any]:
        return {"leftOperand": self.left, "operator": self.op, "rightOperand": self.raw}

    def describe(self) -> str:
        return f"{self.left} {self.op} {_short(self.raw)}"


@dataclass(frozen=True)
class Logical:
    op: str                  # and | or | xone
    items: tuple[Constraint | Logical, ...]
    path: str

    def to_json(self) -> dict[str, Any]:
        return {self.op: [c.to_json() for c in self.items]}

    def describe(self) -> str:
        return "(" + f" {self.op} ".join(c.describe() for c in self.items) + ")"


AnyConstraint = Constraint | Logical


@dataclass(frozen=True)
class Duty:
    action: str              # attribute | inform
    path: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action}


@dataclass(frozen=True)
class Rule:
    kind: Literal["permission", "prohibition"]
    action: str
    target: Asset
    constraints: tuple[AnyConstraint, ...] = ()      # all must hold (ODRL: several constraints = and)
    duties: tuple[Duty, ...] = ()
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target.to_json(), "action": self.action}
        if self.constraints:
            out["constraint"] = [c.to_json() for c in self.constraints]
        if self.duties:
            out["duty"] = [d.to_json() for d in self.duties]
        return out


@dataclass(frozen=True)
class Policy:
    uid: str
    type: str                                        # Offer | Agreement | Set
    assigner: str | None = None                      # organisation id
    assignee: str | None = None
    permissions: tuple[Rule, ...] = ()
    prohibitions: tuple[Rule, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.permissions + self.prohibitions

    @cached_property
    def duties(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.action for r in self.permissions for d in r.duties))

    @cached_property
    def counted(self) -> bool:
        """True when some rule constrains ``count`` (its reads must be counted)."""
        return any(_uses(c, ("count",)) for r in self.rules for c in r.constraints)

    @cached_property
    def static(self) -> bool:
        """True when a decision depends only on the entity's types and id, the purpose and the action
        (no ``count``, ``dateTime`` or ``spatial`` constraint): such decisions can be cached."""
        return not any(_uses(c, ("count", "dateTime", "spatial")) for r in self.rules for c in r.constraints)

    @cached_property
    def by_id(self) -> bool:
        """True when some rule's target looks at entity ids (an id pattern)."""
        return any(r.target.id_pattern is not None for r in self.rules)

    def to_json(self) -> dict[str, Any]:
        """The normalised form: every rule carries its target; types and attributes expanded."""
        out: dict[str, Any] = {"@context": ODRL_CONTEXT, "@type": self.type, "uid": self.uid}
        if self.assigner is not None:
            out["assigner"] = self.assigner
        if self.assignee is not None:
            out["assignee"] = self.assignee
        out["permission"] = [r.to_json() for r in self.permissions]
        if self.prohibitions:
            out["prohibition"] = [r.to_json() for r in self.prohibitions]
        return out


ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"


def _uses(c: AnyConstraint, lefts: tuple[str, ...]) -> bool:
    if isinstance(c, Logical):
        return any(_uses(i, lefts) for i in c.items)
    return c.left in lefts


# ------------------------------------------------------------------------------------------ requests

@dataclass(frozen=True)
class Request:
    """What is being asked: the action, the caller's stated purpose and the time. ``counts``
    gives the reads already made under each policy uid (the ``count`` left operand is the
    number this read would be: reads so far + 1)."""

    action: str = "read"
    purpose: str | None = None
    at: datetime | None = None
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleOutcome:
    policy: str
    rule: str                                        # "permission[0]"
    kind: str
    satisfied: bool                                  # permission: holds; prohibition: applies
    attributes: frozenset[str] | None                # the rule's attributes (None = the whole entity)
    failed: tuple[str, ...] = ()                     # constraints that failed / could not be decided
    duties: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "rule": self.rule, "kind": self.kind,
                               "satisfied": self.satisfied,
                               "attributes": None if self.attributes is None else sorted(self.attributes)}
        if self.failed:
            out["failed"] = list(self.failed)
        if self.duties:
            out["duties"] = list(self.duties)
        return out


@dataclass(frozen=True)
class Result:
    effect: Literal["permit", "deny"]
    attributes: frozenset[str] | None = None         # visible attributes when permitted (None = all)
    hidden: frozenset[str] = frozenset()             # attributes prohibited (subtracted)
    permitted_by: tuple[RuleOutcome, ...] = ()
    prohibited_by: tuple[RuleOutcome, ...] = ()
    failed: tuple[RuleOutcome, ...] = ()             # permissions on this entity whose constraints failed
    reason: str = ""

    @property
    def used_policies(self) -> tuple[str, ...]:
        """Policies whose permissions granted this read (their ``count`` goes up by one)."""
        return tuple(dict.fromkeys(o.policy for o in self.permitted_by))

    def to_json(self) -> dict[str, Any]:
        return {"effect": self.effect, "reason": self.reason,
                "attributes": None if self.attributes is None else sorted(self.attributes),
                "hidden": sorted(self.hidden),
                "permittedBy": [o.to_json() for o in self.permitted_by],
                "prohibitedBy": [o.to_json() for o in self.prohibited_by],
                "notSatisfied": [o.to_json() for o in self.failed]}


# ------------------------------------------------------------------------------------------ evaluation

def entity_location(entity: Entity) -> shapely.Geometry | None:
    inst = default_instance((entity.get("attrs") or {}).get(LOCATION) or [])
    value = value_of(inst) if inst is not None else None
    if not isinstance(value, dict):
        return None
    try:
        return shape(value)
    except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
        return None


class _Facts:
    """What constraints look at, computed at most once per (request, entity)."""

    def __init__(self, req: Request, entity: Entity, now: Callable[[], datetime]):
        self.req, self.entity = req, entity
        self._now = now
        self._at: datetime | None = req.at
        self._loc: Any = _UNSET

    @property
    def at(self) -> datetime:
        if self._at is None:
            self._at = self._now()
        return self._at

    @property
    def location(self) -> shapely.Geometry | None:
        if self._loc is _UNSET:
            self._loc = entity_location(self.entity)
        return self._loc  # type: ignore[no-any-return]


_UNSET = object()


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return bool(a == b)
    if op == "neq":
        return bool(a != b)
    if op == "lt":
        return bool(a < b)
    if op == "lteq":
        return bool(a <= b)
    if op == "gt":
        return bool(a > b)
    return bool(a >= b)     # gteq (operators are validated when parsed)


def _atomic(c: Constraint, facts: _Facts, policy: str) -> tuple[Tri, str]:
    """(holds?, what was compared) for one atomic constraint."""
    if c.left == "purpose":
        p = facts.req.purpose
        if not p:
            return None, "no purpose stated"
        p = purposes.normalise(p)
        if c.op == "eq":
            return p == c.right[0], p
        if c.op == "neq":
            return p != c.right[0], p
        if c.op == "isA":
            return purposes.is_a(p, c.right[0]), p
        hit = any(purposes.is_a(p, r) for r in c.right)
        return (hit if c.op == "isAnyOf" else not hit), p
    if c.left == "dateTime":
        at = facts.at
        return _compare(c.op, at, c.right), at.isoformat()
    if c.left == "count":
        n = int(facts.req.counts.get(policy, 0)) + 1
        return _compare(c.op, n, c.right), f"this would be read {n}"
    # spatial isPartOf
    loc = facts.location
    if loc is None:
        return None, "the entity has no location"
    return bool(c.right.covers(loc)), "location"


def _holds(c: AnyConstraint, facts: _Facts, policy: str, failed: list[str]) -> Tri:
    if isinstance(c, Constraint):
        ok, seen = _atomic(c, facts, policy)
        if ok is not True:
            why = "undecidable" if ok is None else "false"
            failed.append(f"{c.path}: {c.describe()} is {why} ({seen})")
        return ok
    sub: list[str] = []
    vals = [_holds(i, facts, policy, sub) for i in c.items]
    if c.op == "and":
        res: Tri = False if False in vals else (None if None in vals else True)
    elif c.op == "or":
        res = True if True in vals else (None if None in vals else False)
    else:                                           # xone: exactly one holds
        res = None if None in vals else vals.count(True) == 1
    if res is not True:
        failed.append(f"{c.path}: {c.describe()} is {'undecidable' if res is None else 'false'}"
                      + (f" [{'; '.join(sub)}]" if sub else ""))
    return res


def _rule_holds(rule: Rule, facts: _Facts, policy: str) -> tuple[Tri, tuple[str, ...]]:
    failed: list[str] = []
    res: Tri = True
    for c in rule.constraints:
        v = _holds(c, facts, policy, failed)
        if v is False:
            res = False
        elif v is None and res is True:
            res = None
    return res, tuple(failed)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def evaluate(policies: Iterable[Policy], entity: Entity, req: Request,
             now: Callable[[], datetime] = _utcnow) -> Result:
    """Decide ``req`` on ``entity`` under ``policies`` (module docstring: default deny, prohibitions win)."""
    facts = _Facts(req, entity, now)
    permitted: list[RuleOutcome] = []
    prohibited: list[RuleOutcome] = []
    failed: list[RuleOutcome] = []
    for pol in policies:
        for i, rule in enumerate(pol.permissions):
            if req.action not in INCLUDED_IN[rule.action] or not rule.target.matches(entity):
                continue
            ok, why = _rule_holds(rule, facts, pol.uid)
            out = RuleOutcome(pol.uid, rule.path or f"permission[{i}]", "permission", ok is True,
                              rule.target.attributes, why, tuple(d.action for d in rule.duties))
            (permitted if ok is True else failed).append(out)
        for i, rule in enumerate(pol.prohibitions):
            if req.action not in INCLUDED_IN[rule.action] or not rule.target.matches(entity):
                continue
            ok, why = _rule_holds(rule, facts, pol.uid)
            if ok is not False:                     # applies, also when undecidable
                prohibited.append(RuleOutcome(pol.uid, rule.path or f"prohibition[{i}]", "prohibition", True,
                                              rule.target.attributes, why))
    return decide(req.action, permitted, prohibited, failed)


def decide(action: str, permitted: Sequence[RuleOutcome], prohibited: Sequence[RuleOutcome],
           failed: Sequence[RuleOutcome]) -> Result:
    """Combine rule outcomes: default deny, prohibitions win, visible = permitted − prohibited."""
    if not permitted:
        why = f"no permission to {action} this entity"
        why += ("; not satisfied: " + "; ".join(f"{o.policy} {o.rule}: {', '.join(o.failed)}" for o in failed)
                if failed else " (default deny)")
        return Result("deny", permitted_by=(), prohibited_by=tuple(prohibited), failed=tuple(failed), reason=why)
    whole = [o for o in prohibited if o.attributes is None]
    if whole:
        return Result("deny", permitted_by=tuple(permitted), prohibited_by=tuple(prohibited), failed=tuple(failed),
                      reason="prohibited by " + ", ".join(f"{o.policy} {o.rule}" for o in whole)
                      + " (prohibitions win)")
    hidden = frozenset().union(*(o.attributes or frozenset() for o in prohibited))
    attrs: frozenset[str] | None
    if any(o.attributes is None for o in permitted):
        attrs = None
    else:
        attrs = frozenset().union(*(o.attributes or frozenset() for o in permitted))
    if attrs is not None and not (attrs - hidden):
        return Result("deny", permitted_by=tuple(permitted), prohibited_by=tuple(prohibited), failed=tuple(failed),
                      reason="every permitted attribute is prohibited by "
                      + ", ".join(f"{o.policy} {o.rule}" for o in prohibited))
    reason = "permitted by " + ", ".join(f"{o.policy} {o.rule}" for o in permitted)
    if prohibited:
        reason += "; attributes prohibited by " + ", ".join(f"{o.policy} {o.rule}" for o in prohibited)
    return Result("permit", attrs if attrs is None else attrs - hidden, hidden, tuple(permitted),
                  tuple(prohibited), tuple(failed), reason)


def visible_attributes(result: Result, entity: Entity) -> list[str]:
    """The attribute IRIs of ``entity`` a result lets through (for explanations and tests)."""
    if result.effect != "permit":
        return []
    return [a for a in (entity.get("attrs") or {})
            if a not in result.hidden and (result.attributes is None or a in result.attributes)]


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."
