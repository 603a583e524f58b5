"""The data-quality scale every KPI value carries (after the U4SSC data collection guidance).

U4SSC asks cities to say how good each reported number is, because a measured figure and
a guess must not be ranked as equals. The platform uses five levels, best first; each
computed value gets the level its formula can honestly claim (a formula downgrades itself
when coverage is thin), and a manual entry states its own with its evidence.
"""

from __future__ import annotations

from urbanmim.errors import BadRequestData

# (level, label, what it means) — best first; docs/kpis.md repeats this table
LEVELS: tuple[tuple[str, str, str], ...] = (
    ("measured", "accurate measurement",
     "Direct measurement covering the whole city and most of the period (sensors, registers, complete records)."),
    ("calculated", "calculated from complete records",
     "Derived by a documented calculation from complete source data (e.g. network length from GTFS geometry)."),
    ("estimate", "estimate",
     "Modelled or extrapolated from partial coverage or proxies (e.g. population spread over buildings, "
     "noise from the nearest sensor, a year from a few months)."),
    ("reported", "reported by a third party",
     "A figure supplied by another organisation, with evidence, whose source data the city cannot inspect."),
    ("not-traceable", "not traceable",
     "No evidence of where the figure comes from."),
)
CODES = tuple(code for code, _, _ in LEVELS)
LABELS = {code: label for code, label, _ in LEVELS}


def check(level: object) -> str:
    if level not in CODES:
        raise BadRequestData(f"dataQuality must be one of {', '.join(CODES)}, not {level!r}")
    return str(level)


def rank(level: str) -> int:
    """0 = best."""
    return CODES.index(level) if level in CODES else len(CODES)


def worst(*levels: str) -> str:
    return max(levels, key=rank) if levels else CODES[-1]
