"""MIM5: the algorithm register — what the platform computes on city data, and who answers for it.

In the spirit of the Amsterdam and Helsinki algorithm registers, every algorithm that
decides or derives something from city data (analysis models, KPI formulas, validation
that refuses writes) is described once, in code, next to the algorithm itself: the
component that runs it calls :meth:`AlgorithmRegister.register` from its ``install``
hook. The API (``/algorithms/v1``) and the page read this register, so nothing is typed
in by hand twice and a description cannot outlive the code it describes.

An entry is keyed by ``id`` and ``version``: registering the same id again with another
version keeps both (a KPI value records the formula version it was computed with, and
that version must stay explainable after an upgrade).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("analysis", "kpi", "validation", "ingestion", "security", "other")


@dataclass(frozen=True)
class Risk:
    risk: str
    mitigation: str


@dataclass(frozen=True)
class Algorithm:
    """One register entry. ``inputs``/``outputs`` name data (entity types and attributes, or
    parameters); ``human_oversight`` says who looks at the results and how they can be overruled."""

    id: str                       # stable slug, e.g. "analysis.transport-convenience"
    name: str
    version: str
    kind: str                     # one of KINDS
    purpose: str
    method: str                   # how it works, in plain words (formula, model, thresholds)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    owner: str                    # organisation / team accountable
    contact: str                  # e-mail or URL
    human_oversight: str
    risks: tuple[Risk, ...] = ()
    component: str = ""           # the platform component that runs it
    references: tuple[str, ...] = ()   # standards, papers (e.g. "ITU-T Y.4903")
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"algorithm {self.id}: kind must be one of {KINDS}, not {self.kind!r}")
        for name in ("id", "name", "version", "purpose", "method", "owner", "contact", "human_oversight"):
            if not getattr(self, name):
                raise ValueError(f"algorithm {self.id or '?'}: {name} is required")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["humanOversight"] = out.pop("human_oversight")
        out["inputs"], out["outputs"] = list(self.inputs), list(self.outputs)
        out["risks"] = [asdict(r) for r in self.risks]
        out["references"] = list(self.references)
        return out


class AlgorithmRegister:
    """All entries of this platform process (``app.state.algorithms``)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Algorithm] = {}

    def register(self, alg: Algorithm) -> Algorithm:
        key = (alg.id, alg.version)
        old = self._entries.get(key)
        if old is not None and old != alg:
            raise ValueError(f"algorithm {alg.id} version {alg.version} is registered twice with different "
                             f"descriptions; bump the version")
        self._entries[key] = alg
        return alg

    def get(self, alg_id: str, version: str | None = None) -> Algorithm | None:
        if version is not None:
            return self._entries.get((alg_id, version))
        versions = [a for (i, _), a in self._entries.items() if i == alg_id]
        return max(versions, key=lambda a: _version_key(a.version)) if versions else None

    def versions(self, alg_id: str) -> list[Algorithm]:
        return sorted((a for (i, _), a in self._entries.items() if i == alg_id), key=lambda a: _version_key(a.version))

    def all(self, kind: str | None = None) -> list[Algorithm]:
        """The newest version of each algorithm, ordered by kind then id."""
        latest: dict[str, Algorithm] = {}
        for a in self._entries.values():
            cur = latest.get(a.id)
            if cur is None or _version_key(a.version) > _version_key(cur.version):
                latest[a.id] = a
        return sorted((a for a in latest.values() if kind is None or a.kind == kind), key=lambda a: (a.kind, a.id))


def _version_key(v: str) -> tuple[Any, ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in v.replace("-", ".").split("."))


def register_of(app: Any) -> AlgorithmRegister:
    """The app's register, created on first use (components call this from ``install``)."""
    reg = getattr(app.state, "algorithms", None)
    if reg is None:
        reg = AlgorithmRegister()
        app.state.algorithms = reg
    return reg
