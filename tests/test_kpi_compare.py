"""Comparison rules (pure functions): target achievement and U4SSC bands, standing, normalisation, ranking,
trends, periods, and the SVG charts' accessibility."""

from __future__ import annotations

import pytest

from urbanmim.errors import BadRequestData
from urbanmim.kpi import charts, compare
from urbanmim.kpi.periods import parse_period, period_of
from urbanmim.kpi.values import KpiValue


def test_achievement_bands_and_standing() -> None:
    # higher is better: value / target, capped at 100
    assert compare.achievement(30, 60, "higher") == 50 and compare.band(50) == "33-66"
    assert compare.achievement(90, 60, "higher") == 100 and compare.standing(100) == "veryGood"
    # lower is better: target / value (NO2 35 against 20 -> 57.1 %)
    assert compare.achievement(35, 20, "lower") == pytest.approx(57.142857)
    assert compare.achievement(0, 20, "lower") == 100
    assert [compare.band(x) for x in (0, 33.3, 33.4, 66.6, 66.7, 100)] == ["0-33", "0-33", "33-66", "33-66",
                                                                           "66-100", "66-100"]
    assert [compare.standing(x) for x in (5, 20, 50, 80)] == ["veryBad", "bad", "fair", "good"]
    assert compare.achievement(None, 10, "higher") is None and compare.achievement(5, None, "higher") is None


def _v(value: float, unit: str, **den: float) -> KpiValue:
    return KpiValue(tenant="t", code="X", period="2025", value=value, unit=unit, quality="measured", denominators=den)


def test_normalisation_uses_the_recorded_denominators() -> None:
    assert compare.normalised(_v(70, "per 100,000 inhabitants"), "per-capita") == (0.0007, "per inhabitant")
    assert compare.normalised(_v(70, "per 100,000 inhabitants", population=10_000, areaKm2=2), "per-km2") == \
        (pytest.approx(3.5), "per km²")
    assert compare.normalised(_v(12, "absolute", population=40_000), "per-100k") == \
        (pytest.approx(30.0), "per 100,000 inhabitants")
    assert compare.normalised(_v(12, "absolute", areaKm2=4), "per-km2") == (3.0, "per km²")
    assert compare.normalised(_v(55, "percent", population=1), "per-capita") == (55, "percent")   # shares stay
    with pytest.raises(BadRequestData):
        compare.normalised(_v(1, "percent"), "per-cow")


def test_ranking_ties_and_missing_values() -> None:
    def e(t: str, v: float | None) -> compare.Entry:
        return compare.Entry(t, v, "u", "measured", False, "2025", None, None)
    ranked = compare.rank([e("a", 3), e("b", 5), e("c", None), e("d", 5)], "higher")
    assert [(x.tenant, x.rank) for x in ranked] == [("b", 1), ("d", 1), ("a", 3), ("c", None)]
    ranked = compare.rank([e("a", 3), e("b", 5)], "lower")
    assert [(x.tenant, x.rank) for x in ranked] == [("a", 1), ("b", 2)]


def test_trend_and_periods() -> None:
    vs = [_v(10, "percent"), _v(15, "percent")]
    vs[1].period = "2026"
    assert [(p["period"], p["change"]) for p in compare.trend(list(reversed(vs)))] == [("2025", None), ("2026", 5)]
    q = parse_period("2026-Q2")
    assert (q.start.isoformat(), q.last_day.isoformat()) == ("2026-04-01", "2026-06-30")
    assert parse_period("2026-W01").start.isoformat() == "2025-12-29"
    assert period_of(q.start, "monthly").label == "2026-04" and q.previous().label == "2026-Q1"
    for bad in ("26", "2026-13", "2026-Q5", "x"):
        with pytest.raises(BadRequestData):
            parse_period(bad)


def test_charts_are_accessible_svg_and_escape_text() -> None:
    svg = str(charts.bar_chart("NO2 <by city>", "desc & more", [("a<b", 1.0, "measured"), ("c", None, "")], "µg/m³"))
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    assert "a&lt;b" in svg and "NO2 &lt;by city&gt;" in svg and "a<b" not in svg
    line = str(charts.line_chart("t", "d", ["2024", "2025"], [("x", [1.0, None]), ("y", [2.0, 3.0])], "u"))
    assert line.count("<path") == 1          # x has one point: a marker, no line
    radar = str(charts.radar("t", "d", ["a", "b", "c"], [("x", [10.0, 50.0, None])]))
    assert radar.count("<polygon") >= 5
