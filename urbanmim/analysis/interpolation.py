"""Spatial interpolation of a numeric sensor attribute onto a grid, with an uncertainty per cell.

**Why inverse-distance weighting (IDW) and not kriging.** Kriging is the best linear
unbiased predictor *given the variogram*, and the variogram has to be fitted to the data.
A city has 4 to 24 air-quality or noise sensors: an empirical variogram from 6 to 276 pairs,
binned by distance, is too noisy to fit a range and a sill reliably, and a badly fitted
kriging gives a confident, wrong map (and a confidently wrong error map). IDW is exact at
the sensors, never leaves the range of the measured values, has one interpretable parameter
(the power), and needs no fit. What kriging adds — an error estimate — is supplied here by a
method that says openly what it assumes.

**Value.** ``z(x) = Σ w_i z_i / Σ w_i`` with ``w_i = 1 / d_i^p`` (distances in metres on the
city's local projection, ``p`` = ``power``); at a sensor the value is that sensor's.

**Uncertainty (one standard error, same unit as the value).**

1. Leave-one-out cross-validation: each sensor ``i`` is predicted by IDW from the others,
   residual ``e_i = z_i − ẑ_{−i}``. That is the error of the map at a place whose nearest
   sensor is as far as sensor ``i``'s nearest neighbour.
2. Local error level ``L(x) = Σ w_i e_i² / Σ w_i`` — the same IDW weights spread the squared
   residuals, so a cell near sensors that are badly predicted by their neighbours is flagged.
3. Distance scaling ``u(x) = sqrt(L(x) · d(x) / s)``, with ``d(x)`` the distance to the
   nearest sensor and ``s`` the mean nearest-neighbour distance between sensors (the distance at
   which the residuals were measured). Error variance growing linearly with distance is the
   linear variogram, the simplest spatial model that a handful of points supports; it gives 0
   at a sensor and grows without bound away from all sensors, as it should.

With fewer than two sensors there is nothing to cross-validate: uncertainty is ``null``.

**Grid.** Square cells of ``cellSize`` metres on the local projection, covering the bounding
box of the city's districts and clipped to their union (cells outside, and slivers under 0.1 %
of a cell, are dropped), each
returned as a lon/lat polygon; the value is computed at the cell's centre. Without district
polygons the grid covers the sensors' bounding box grown by one cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely

from urbanmim.algorithms.register import Algorithm, Risk
from urbanmim.analysis.data import Frame, Inputs, Needs, feature, to_geojson_many
from urbanmim.analysis.model import Parameter, ParameterError, Result

MAX_CELLS = 40_000


def idw(xy: np.ndarray, z: np.ndarray, targets: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """IDW of values ``z`` at points ``xy`` onto ``targets``: (values, weights matrix, nearest distance)."""
    d = np.hypot(targets[:, None, 0] - xy[None, :, 0], targets[:, None, 1] - xy[None, :, 1])
    exact = d < 1e-9
    with np.errstate(divide="ignore"):
        w = 1.0 / d ** power
    hit = exact.any(axis=1)
    w[hit] = exact[hit].astype(float)            # at a sensor: that sensor (or the mean of coincident ones)
    values = (w @ z) / w.sum(axis=1)
    return values, w, d.min(axis=1)


def loo_residuals(xy: np.ndarray, z: np.ndarray, power: float) -> np.ndarray:
    """``e_i = z_i − IDW_{−i}(x_i)`` for every sensor (needs at least two)."""
    n = len(z)
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        pred, _, _ = idw(xy[keep], z[keep], xy[i:i + 1], power)
        out[i] = z[i] - pred[0]
    return out


def nearest_spacing(xy: np.ndarray) -> float:
    """Mean distance from each sensor to its nearest other sensor."""
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).mean())


def uncertainty(w: np.ndarray, nearest: np.ndarray, residuals: np.ndarray, spacing: float) -> np.ndarray:
    local = (w @ residuals ** 2) / w.sum(axis=1)
    scale = nearest / spacing if spacing > 0 else np.zeros_like(nearest)
    return np.sqrt(local * scale)


class Interpolation:
    id = "interpolation"
    name = "Spatial interpolation of a sensor attribute"
    version = "1"
    unit: str | None = None
    description = ("Inverse-distance-weighted map of any numeric sensor attribute (e.g. no2 of AirQualityObserved, "
                   "LAeq of NoiseLevelObserved) on a grid, with an uncertainty per cell.")
    parameters = (
        Parameter("type", "string", "entity type of the sensors", default="AirQualityObserved"),
        Parameter("attribute", "string", "numeric attribute to interpolate", default="no2"),
        Parameter("cellSize", "number", "grid cell side", default=250.0, min=50, max=5000, unit="m"),
        Parameter("power", "number", "IDW power (higher: more local)", default=2.0, min=0.5, max=5),
    )
    inputs = ("sensors of the given type: location (Point), the attribute", "District: location (grid extent)")
    outputs = ("per grid cell: value, uncertainty (one standard error), nearestSensorM",
               "summary: sensors, cells, min, max, mean, looRmse, meanSpacingM")
    algorithm = Algorithm(
        id="analysis.interpolation", name=name, version=version, kind="analysis",
        purpose="Estimate a sensor measurement (air quality, noise...) between the sensors, as a map with its "
                "uncertainty, so residents and planners see the spatial pattern and how far to trust it.",
        method="Inverse-distance weighting on a local metric projection; per-cell uncertainty from leave-one-out "
               "cross-validation residuals spread with the IDW weights and scaled by distance to the nearest "
               "sensor (linear variogram assumption). Kriging was not used: 4-24 sensors do not support a "
               "reliable variogram fit.",
        inputs=("numeric attribute and location of the sensors of one entity type", "District polygons (extent)",
                "parameters type, attribute, cellSize, power"),
        outputs=("GeoJSON grid of values and uncertainties", "urbanmim:AnalysisResult summary entity"),
        owner="the city's environment department", contact="see the platform's /algorithms page",
        human_oversight="Maps are shown with their uncertainty layer; they are indicative and never replace "
                        "the measured values at the sensors for regulatory reporting.",
        risks=(Risk("Between sparse sensors the map is smooth where real pollution is not (street canyons, "
                    "hot spots).", "The uncertainty grows with distance to the nearest sensor and is shown "
                    "with the map."),
               Risk("A faulty sensor distorts its surroundings.", "Leave-one-out residuals expose sensors that "
                    "disagree with their neighbours; check them before publishing.")),
        component="analysis", references=("Shepard 1968, A two-dimensional interpolation function",),
    )

    def needs(self, params: dict[str, Any]) -> Needs:
        return Needs(types=(params["type"], "District"))

    def run(self, inputs: Inputs, params: dict[str, Any]) -> Result:
        attr, size, power = params["attribute"], float(params["cellSize"]), float(params["power"])
        if not inputs.of(params["type"]):
            raise ParameterError("type", f"this city has no {params['type']} entity")
        sensors = [(s, s.number(attr)) for s in inputs.of(params["type"])
                   if s.geometry and s.geometry.get("type") == "Point"]
        sensors = [(s, v) for s, v in sensors if v is not None]
        if not sensors:
            raise ParameterError("attribute", f"no {params['type']} entity has a numeric {attr} and a Point "
                                              "location")
        districts = [d.geometry for d in inputs.of("District")
                     if d.geometry and d.geometry.get("type") in ("Polygon", "MultiPolygon")]
        frame = Frame.around(districts or [s.geometry for s, _ in sensors if s.geometry])
        xy = frame.points(np.array([s.geometry["coordinates"][:2] for s, _ in sensors if s.geometry], dtype=float))
        z = np.array([v for _, v in sensors], dtype=float)
        if districts:
            area = shapely.union_all(shapely.make_valid(frame.project_many(districts)))
            x0, y0, x1, y1 = area.bounds
        else:
            x0, y0 = xy.min(axis=0) - size
            x1, y1 = xy.max(axis=0) + size
            area = shapely.box(x0, y0, x1, y1)
        # (a millimetre-per-metre tolerance: a boundary that bows by centimetres adds no row of slivers)
        nx, ny = max(1, math.ceil((x1 - x0) / size - 1e-3)), max(1, math.ceil((y1 - y0) / size - 1e-3))
        if nx * ny > MAX_CELLS:
            raise ParameterError("cellSize", f"{size:g} m gives {nx * ny} cells over this city (at most {MAX_CELLS});"
                                             " choose a larger cell")
        grid_c, grid_r = np.meshgrid(np.arange(nx), np.arange(ny))
        cols, rows = grid_c.ravel(), grid_r.ravel()
        cells = shapely.box(x0 + cols * size, y0 + rows * size, x0 + (cols + 1) * size, y0 + (rows + 1) * size)
        shapely.prepare(area)
        keep = shapely.intersects(area, cells)
        cells, cols, rows = shapely.intersection(cells[keep], area), cols[keep], rows[keep]
        # slivers (< 0.1 % of a cell, e.g. where a lon/lat-straight boundary bows by centimetres) are dropped
        keep = ~shapely.is_empty(cells) & (shapely.area(cells) > 1e-3 * size * size)
        cells, cols, rows = cells[keep], cols[keep], rows[keep]
        centres = np.column_stack([x0 + (cols + 0.5) * size, y0 + (rows + 0.5) * size])
        values, w, nearest = idw(xy, z, centres, power)

        loo_rmse: float | None = None
        spacing: float | None = None
        unc: np.ndarray | None = None
        if len(z) >= 2:
            res = loo_residuals(xy, z, power)
            loo_rmse = float(np.sqrt(np.mean(res ** 2)))
            spacing = nearest_spacing(xy)
            unc = uncertainty(w, nearest, res, spacing) if len(centres) else np.empty(0)

        geojson = to_geojson_many(frame.unproject(cells) if len(cells) else cells)
        feats = []
        for k in range(len(cells)):
            feats.append(feature(f"r{int(rows[k])}c{int(cols[k])}", geojson[k], {
                "value": _r(values[k]), "uncertainty": _r(unc[k]) if unc is not None else None,
                "nearestSensorM": round(float(nearest[k]), 1)}))
        units = {s.units.get(attr) for s, _ in sensors} - {None}
        unit = units.pop() if len(units) == 1 else None
        summary = {"type": params["type"], "attribute": attr, "sensors": len(z), "cells": len(feats),
                   "min": _r(values.min()) if len(values) else None, "max": _r(values.max()) if len(values) else None,
                   "mean": _r(values.mean()) if len(values) else None,
                   "looRmse": _r(loo_rmse) if loo_rmse is not None else None,
                   "meanSpacingM": round(spacing, 1) if spacing is not None else None,
                   "cellSize": size, "power": power, "method": "idw"}
        return Result(unit=unit, summary=summary, features=feats)


def _r(x: float) -> float:
    return round(float(x), 6)
