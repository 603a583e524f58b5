"""The KPI formulas shipped with the platform, one module per field; importing this registers them all."""

from urbanmim.kpi.formulas import environment, services, transport  # noqa: F401  (registration)
from urbanmim.kpi.formulas.base import FORMULAS, Formula, NoData, Outcome

__all__ = ["FORMULAS", "Formula", "NoData", "Outcome"]
