"""What a model is: declared parameters and outputs, and a pure ``run(inputs, params)``.

Why declared rather than free-form: the API lists the parameters (``GET /analysis/v1/models``)
so the twin's panel can build its form from them, the same declaration validates every run
(a bad value is a 400 naming the parameter, never a 500 deep in numpy), and the MIM5 register
entry is written next to the code it describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from urbanmim.algorithms.register import Algorithm
from urbanmim.analysis.data import Inputs, Needs
from urbanmim.errors import BadRequestData


class ParameterError(BadRequestData):
    """A model parameter (or scenario edit member) that is missing, of the wrong type or out of bounds."""

    def __init__(self, parameter: str, detail: str):
        super().__init__(f"parameter {parameter}: {detail}", title="Invalid analysis parameter",
                         extra={"parameter": parameter})


_TYPES: dict[str, tuple[type, ...]] = {"number": (int, float), "integer": (int,), "string": (str,),
                                       "boolean": (bool,)}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str                       # number | integer | string | boolean
    description: str
    default: Any = None             # None and not ``optional``: required
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    enum: tuple[str, ...] | None = None
    optional: bool = False          # may stay None (e.g. forecast entityId: chosen by the model)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "description": self.description,
                               "default": self.default}
        for k in ("min", "max", "unit"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.default is None and not self.optional:
            out["required"] = True
        return out

    def check(self, value: Any) -> Any:
        """The value, validated (an int given for a number is fine; a bool is never a number)."""
        if value is None:
            if self.default is None and not self.optional:
                raise ParameterError(self.name, "is required")
            return self.default
        ok = _TYPES[self.type]
        if isinstance(value, bool) and self.type != "boolean" or not isinstance(value, ok):
            raise ParameterError(self.name, f"must be a {self.type}, got {value!r}")
        if self.type == "number":
            value = float(cast(float, value))
            if value != value or value in (float("inf"), float("-inf")):
                raise ParameterError(self.name, "must be a finite number")
        if self.min is not None and value < self.min:
            raise ParameterError(self.name, f"must be >= {self.min:g}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ParameterError(self.name, f"must be <= {self.max:g}, got {value!r}")
        if self.enum is not None and value not in self.enum:
            raise ParameterError(self.name, f"must be one of {', '.join(self.enum)}, got {value!r}")
        if self.type == "string" and not value.strip():
            raise ParameterError(self.name, "must not be empty")
        return value


@dataclass
class Result:
    """What a model computes: the unit of ``value``, a summary, GeoJSON features, and extras (e.g. series)."""

    unit: str | None
    summary: dict[str, Any]
    features: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


class Model(Protocol):
    """One analysis model. ``needs`` says what to read (from the resolved parameters), ``run`` is pure.

    The members are read-only (a model's declaration does not change at run time); plain class
    attributes satisfy them."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def unit(self) -> str | None: ...   # of ``value``; None when it comes from the data (the unitCode)
    @property
    def parameters(self) -> tuple[Parameter, ...]: ...
    @property
    def inputs(self) -> tuple[str, ...]: ...
    @property
    def outputs(self) -> tuple[str, ...]: ...
    @property
    def algorithm(self) -> Algorithm: ...

    def needs(self, params: dict[str, Any]) -> Needs: ...

    def run(self, inputs: Inputs, params: dict[str, Any]) -> Result: ...


def resolve(model: Model, given: Any) -> dict[str, Any]:
    """Defaults filled in, every value checked; unknown names refused."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise BadRequestData("parameters must be a JSON object", extra={"parameter": "parameters"})
    names = {p.name for p in model.parameters}
    for k in given:
        if k not in names:
            raise ParameterError(str(k), f"is not a parameter of model {model.id} "
                                         f"(known: {', '.join(sorted(names))})")
    return {p.name: p.check(given.get(p.name)) for p in model.parameters}


def describe(model: Model) -> dict[str, Any]:
    """The model as ``GET /analysis/v1/models`` lists it."""
    return {"id": model.id, "name": model.name, "version": model.version, "description": model.description,
            "algorithm": model.algorithm.id, "unit": model.unit, "inputs": list(model.inputs),
            "parameters": [p.to_json() for p in model.parameters], "outputs": list(model.outputs)}
