"""W3C DPV purposes as ODRL's ``purpose`` left operand sees them: a narrower purpose is a broader one.

Why no table here: the platform has one DPV purpose taxonomy, MIM4's
(``urbanmim/consent/dpv.py``, also served at ``/consent/v1/purposes``), so a purpose means the
same in a consent and in an agreement. This module only adapts it to ODRL: a policy may name
only known purposes (a misspelt one would silently never match, so it is a 400), while a
request may state anything — an unknown purpose is then only equal to itself.
"""

from __future__ import annotations

from urbanmim.consent import dpv

ROOT = dpv.ROOT


def known(purpose: str) -> str | None:
    """``dpv:X`` for any spelling of a known purpose, else None."""
    return dpv.normalise(purpose)


def normalise(purpose: str) -> str:
    """The ``dpv:X`` form of a known purpose; other strings unchanged."""
    return dpv.normalise(purpose) or purpose.strip()


def is_a(purpose: str, broader: str) -> bool:
    """True when ``purpose`` is ``broader`` or narrower than it (``dpv:AcademicResearch`` is a
    ``dpv:ResearchAndDevelopment``; every known purpose is a ``dpv:Purpose``)."""
    p = dpv.normalise(purpose)
    if p is None:
        return purpose.strip() == broader
    return broader in dpv.ancestors(p)
