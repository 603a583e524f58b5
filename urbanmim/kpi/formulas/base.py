"""What a KPI formula is: versioned code that turns city data into values, and its register entry.

Why a declared object per formula: the number a city reports must stay explainable after
the code changes. Each formula carries its KPI code, a version (bumped whenever the result
could change), a one-line ``calculationFormula`` that goes into every value it produces, the
data it reads, and the data-quality level it can claim; :meth:`Formula.algorithm` turns that
into the MIM5 register entry (kind ``kpi``), so the register and the values name the same
version. A formula that finds no data raises :class:`NoData` (nothing is written: an absent
value is honest, a zero is not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.algorithms.register import Algorithm, Risk
from urbanmim.kpi.catalogue import find_builtin, slug
from urbanmim.kpi.citydata import CityData
from urbanmim.kpi.values import Input


class NoData(Exception):
    """The city holds no data this formula can use (the reason is shown to the user)."""


@dataclass
class Outcome:
    value: float | None
    quality: str
    inputs: list[Input]
    component: str = ""
    unit: str = ""                      # default: the catalogue unit
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    denominators: dict[str, float] = field(default_factory=dict)
    target: float | None = None         # default: the catalogue target


Compute = Callable[[CityData], Awaitable[list[Outcome]]]


@dataclass(frozen=True)
class Formula:
    code: str
    version: str
    formula: str                        # calculationFormula: one line, written into every value
    inputs: tuple[str, ...]
    compute: Compute
    risks: tuple[Risk, ...] = ()
    history: bool = False               # reads the period's history (else the entities' current state)

    @property
    def id(self) -> str:
        return "kpi." + slug(self.code).lower()

    def algorithm(self) -> Algorithm:
        d = find_builtin(self.code)
        name = d.name if d else self.code
        return Algorithm(
            id=self.id, name=f"KPI {self.code} {name}", version=self.version, kind="kpi",
            purpose=f"Compute the indicator '{name}' ({self.code}) from the city's own data, so the figure a city "
                    "reports is reproducible, comparable across cities and carries its provenance.",
            method=self.formula + (f" — {d.method}" if d and d.method else ""),
            inputs=self.inputs,
            outputs=(f"KeyPerformanceIndicator entities (kpiCode '{self.code}'), one per city and period, with "
                     "value, unit, data-quality level, inputs and this formula's version",),
            owner="the city's performance monitoring team", contact="see the platform's /algorithms page",
            human_oversight="Every value starts unverified; a city officer checks the inputs listed in its "
                            "provenance and marks it verified (POST /kpi/v1/values/{id}/verify) or replaces it "
                            "with a manual value and evidence. Computation never overwrites a verified or "
                            "manual value.",
            risks=self.risks or (Risk("Incomplete data (a missing sensor, an unloaded district) biases the value.",
                                      "The value lists the entities it used and downgrades its data-quality "
                                      "level when coverage is thin."),),
            component="kpi", references=("ITU-T Y.4903 (U4SSC KPIs for smart sustainable cities)",),
        )


FORMULAS: dict[str, Formula] = {}


def formula(code: str, version: str, text: str, inputs: tuple[str, ...], risks: tuple[Risk, ...] = (), *,
            history: bool = False) -> Callable[[Compute], Compute]:
    """Register the decorated coroutine as the formula of ``code`` (one formula per KPI code).
    ``history``: the formula reads the period's temporal history; otherwise it reads the entities as
    they are now, and a value for a closed period says so in its notes."""
    def deco(fn: Compute) -> Compute:
        if code in FORMULAS:
            raise ValueError(f"KPI {code} has two formulas")
        FORMULAS[code] = Formula(code, version, text, inputs, fn, risks, history)
        return fn
    return deco


def per_100k(x: float, population: float) -> float:
    return x / population * 100_000.0


def pct(part: float, whole: float) -> float:
    return part / whole * 100.0
