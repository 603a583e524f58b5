"""Short-term forecast of a sensor time series, with an honest error on held-back data.

**Model: seasonal profile + level.** The history is reduced to hourly means. The profile
is the mean of each *season key* over the fitting window — the hour of day (``daily``),
the hour of day and whether the day is a weekday or a weekend (``daytype``, the default:
traffic and NO2 differ most between those two), or the hour of the week (``weekly``, needs
about two weeks). The level is the mean residual (value − profile) over the last 24 fitted
hours, so a recent shift (a cold week, road works) carries into the next day. Forecast =
profile(key of the hour) + level. A key never seen in the window falls back to the hour of
day, then to the overall mean.

**Why not Holt-Winters or ARIMA.** With 7–14 days of hourly data a triple exponential
smoothing fits 3 smoothing constants and 24–168 seasonal states by optimisation, which is
unstable on so few seasons (and statsmodels would be a heavy dependency for it); the profile
average is the maximum-likelihood seasonal estimate under stationary noise, has no tuning
parameter, and on an exactly periodic series reproduces it exactly.

**Honest error.** The last ``holdout`` hours are hidden, the model is fitted on what is
before them and forecasts them; MAE, RMSE and MAPE are computed on those hours only. The
same hours are forecast by the seasonal-naive baseline (the value at the same hour on the
last day before the hidden window), and ``skill = 1 − MAE / naive MAE`` tells whether the
model is worth more than "same as yesterday". The forecast shown is then refitted on all
the history. Hours are UTC (weekday/weekend are UTC days).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from urbanmim.algorithms.register import Algorithm, Risk
from urbanmim.analysis.data import Inputs, Needs, SeriesRequest, feature
from urbanmim.analysis.model import Parameter, ParameterError, Result
from urbanmim.temporal.timeutil import HOUR_MS, iso

DAY = 24
SEASONS = ("daily", "daytype", "weekly")


def hourly(points: list[tuple[int, float]]) -> tuple[int, np.ndarray]:
    """(first hour as epoch hours, hourly means with NaN for empty hours) of (epoch ms, value) points."""
    hours = np.array([t // HOUR_MS for t, _ in points], dtype=np.int64)
    vals = np.array([v for _, v in points], dtype=float)
    h0 = int(hours.min())
    n = int(hours.max()) - h0 + 1
    sums = np.bincount(hours - h0, weights=vals, minlength=n)
    counts = np.bincount(hours - h0, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return h0, out


def season_key(hours: np.ndarray, season: str) -> np.ndarray:
    """Epoch hours -> season keys (epoch day 0, 1970-01-01, was a Thursday)."""
    hod = hours % 24
    dow = (hours // 24 + 3) % 7            # 0 = Monday
    if season == "daily":
        return hod
    if season == "daytype":
        return hod + 24 * (dow >= 5)
    return hod + 24 * dow


def fit(hours: np.ndarray, y: np.ndarray, season: str) -> dict[str, Any]:
    """The profile per key (with hour-of-day and overall fallbacks) and the recent level."""
    ok = ~np.isnan(y)
    if not ok.any():
        raise ValueError("no data")
    keys = season_key(hours[ok], season)
    hod = hours[ok] % 24
    prof = {int(k): float(y[ok][keys == k].mean()) for k in np.unique(keys)}
    daily = {int(h): float(y[ok][hod == h].mean()) for h in np.unique(hod)}
    model = {"season": season, "profile": prof, "daily": daily, "mean": float(y[ok].mean()), "level": 0.0}
    last = hours[ok] >= hours[ok].max() - (DAY - 1)
    model["level"] = float(np.mean(y[ok][last] - profile_at(model, hours[ok][last])))
    return model


def profile_at(model: dict[str, Any], hours: np.ndarray) -> np.ndarray:
    keys = season_key(hours, model["season"])
    return np.array([model["profile"].get(int(k), model["daily"].get(int(h % 24), model["mean"]))
                     for k, h in zip(keys, hours, strict=True)], dtype=float)


def predict(model: dict[str, Any], hours: np.ndarray) -> np.ndarray:
    return profile_at(model, hours) + model["level"]


def naive(hours: np.ndarray, y: np.ndarray, cutoff: int, targets: np.ndarray) -> np.ndarray:
    """Seasonal naive: the value at the same hour on the latest day before ``cutoff`` that has one."""
    known = {int(h): float(v) for h, v in zip(hours, y, strict=True) if h < cutoff and not np.isnan(v)}
    out = np.full(len(targets), np.nan)
    for i, t in enumerate(targets):
        k = int(t) - DAY * ((int(t) - cutoff) // DAY + 1)
        while k >= int(hours[0]):
            if k in known:
                out[i] = known[k]
                break
            k -= DAY
    return out


def errors(actual: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    ok = ~np.isnan(actual) & ~np.isnan(pred)
    if not ok.any():
        return {"mae": None, "rmse": None, "mape": None}
    e = actual[ok] - pred[ok]
    nz = actual[ok] != 0
    mape = float(np.mean(np.abs(e[nz] / actual[ok][nz])) * 100) if nz.any() else None
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e ** 2))), "mape": mape}


def _iso_hours(hours: np.ndarray) -> list[str]:
    return [iso(int(h) * HOUR_MS) for h in hours]


def _vals(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 6) for v in a]


class Forecast:
    id = "forecast"
    name = "Short-term forecast of a sensor time series"
    version = "1"
    unit: str | None = None
    description = ("Next hours of a sensor attribute (e.g. intensity of TrafficFlowObserved, no2 of "
                   "AirQualityObserved) from its history, with the error measured on held-back hours against the "
                   "seasonal-naive baseline.")
    parameters = (
        Parameter("type", "string", "entity type of the sensor", default="TrafficFlowObserved"),
        Parameter("attribute", "string", "numeric attribute to forecast", default="intensity"),
        Parameter("entityId", "string", "the sensor (default: the first entity of the type with history of the "
                  "attribute)", optional=True),
        Parameter("horizon", "integer", "hours to forecast", default=24, min=1, max=168, unit="h"),
        Parameter("season", "string", "seasonal profile key", default="daytype", enum=SEASONS),
        Parameter("historyDays", "integer", "days of history to read (before the latest value)", default=14, min=2,
                  max=90, unit="d"),
        Parameter("holdout", "integer", "hours hidden from the fit to measure the error", default=24, min=1,
                  max=168, unit="h"),
    )
    inputs = ("temporal history of one attribute of one entity", "that entity's location")
    outputs = ("series: hourly history, forecast, holdout (actual, forecast, naive)",
               "summary: mae, rmse, mape, naiveMae, naiveRmse, naiveMape, skill")
    algorithm = Algorithm(
        id="analysis.forecast", name=name, version=version, kind="analysis",
        purpose="Anticipate the next day of traffic or air quality at a sensor, so operators can plan (e.g. "
                "traffic management, public warnings), with the error the forecast has shown on recent data.",
        method="Hourly means; seasonal profile (hour of day, per weekday/weekend by default) averaged over the "
               "history plus the mean residual of the last 24 hours. The last hours are held back to measure "
               "MAE/RMSE/MAPE against the seasonal-naive forecast (same hour yesterday).",
        inputs=("temporal history of the attribute (through the temporal service)",
                "parameters type, attribute, entityId, horizon, season, historyDays, holdout"),
        outputs=("hourly forecast with held-back error measures", "urbanmim:AnalysisResult entity per sensor"),
        owner="the city's mobility and environment departments", contact="see the platform's /algorithms page",
        human_oversight="Forecasts are advisory and shown with their measured error and the naive baseline; an "
                        "operator decides on any action.",
        risks=(Risk("Unusual days (holidays, events, incidents) are not in the profile and are forecast as "
                    "ordinary days.", "The error on held-back data is shown; operators add their own knowledge "
                    "of planned events."),),
        component="analysis", references=("Hyndman & Athanasopoulos, Forecasting: Principles and Practice, "
                                          "ch. 5 (benchmark methods) and 5.8 (evaluating accuracy)",),
    )

    def needs(self, params: dict[str, Any]) -> Needs:
        return Needs(types=(params["type"],), series=SeriesRequest(params["type"], params["attribute"],
                                                                   params.get("entityId"), params["historyDays"]))

    def run(self, inputs: Inputs, params: dict[str, Any]) -> Result:
        s = inputs.series
        season, horizon, holdout = params["season"], int(params["horizon"]), int(params["holdout"])
        if s is None or not s.points:
            raise ParameterError("entityId", f"no history of {params['attribute']} for "
                                             f"{params.get('entityId') or 'any ' + params['type']}")
        h0, y = hourly(s.points)
        hours = np.arange(h0, h0 + len(y))
        have = int((~np.isnan(y)).sum())
        need = holdout + DAY
        if len(y) < need + 1 or int((~np.isnan(y[:-holdout])).sum()) < DAY:
            raise ParameterError("historyDays", f"{s.entity_id} has {have} hours of {s.attribute} over {len(y)} "
                                                f"hours; at least {need} hours are needed for holdout={holdout}")
        cutoff = int(hours[-holdout])
        test_h = hours[-holdout:]
        m = fit(hours[:-holdout], y[:-holdout], season)
        f_test = predict(m, test_h)
        n_test = naive(hours, y, cutoff, test_h)
        err, nerr = errors(y[-holdout:], f_test), errors(y[-holdout:], n_test)
        full = fit(hours, y, season)
        fut = np.arange(int(hours[-1]) + 1, int(hours[-1]) + 1 + horizon)
        fc = predict(full, fut)
        skill = (1 - err["mae"] / nerr["mae"]) if err["mae"] is not None and nerr["mae"] else None
        rec = next((r for r in inputs.of(params["type"]) if r.id == s.entity_id), None)
        summary = {"entityId": s.entity_id, "attribute": s.attribute, "season": season, "historyHours": have,
                   "holdoutHours": holdout, "horizon": horizon,
                   **{k: _rn(v) for k, v in err.items()},
                   **{"naive" + k.capitalize(): _rn(v) for k, v in nerr.items()},
                   "skill": _rn(skill), "level": _rn(full["level"])}
        geom = rec.geometry if rec is not None else None
        feats = [feature(s.entity_id, geom, {"label": (rec.label() if rec else None) or s.entity_id,
                                             "entityId": s.entity_id, "value": _rn(float(fc[0]))})]
        series = {"timestamps": _iso_hours(hours), "values": _vals(y), "forecastTimestamps": _iso_hours(fut),
                  "forecast": _vals(fc),
                  "holdout": {"timestamps": _iso_hours(test_h), "actual": _vals(y[-holdout:]),
                              "forecast": _vals(f_test), "naive": _vals(n_test)}}
        return Result(unit=s.unit, summary=summary, features=feats, extra={"series": series})


def _rn(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)
