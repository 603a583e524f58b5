// The analysis panel: runs a model of /analysis/v1 and draws its result on the map (a choropleth
// for areas and grid cells, coloured circles for points); a what-if scenario is built from a few
// edits and compared: before and after side by side (small SVG maps on one colour scale) and the
// difference on the main map and in a table (the accessible alternative to both pictures).
import { $, announce, bboxOf, fmtNumber, getJSON, h, t, unitText } from "./dom.js";

const SEQ = ["#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b"];
const DIV = ["#b2182b", "#ef8a62", "#f7f7f7", "#67a9cf", "#2166ac"];

function valueRange(features, key) {
  const vals = features.map((f) => f.properties[key]).filter((v) => typeof v === "number");
  if (!vals.length) return [0, 1];
  return [Math.min(...vals), Math.max(...vals)];
}

function colorOf(v, lo, hi, ramp) {
  if (typeof v !== "number") return "#d5dbe1";
  const x = hi > lo ? (v - lo) / (hi - lo) : 0.5;
  return ramp[Math.min(ramp.length - 1, Math.max(0, Math.floor(x * ramp.length)))];
}

// A MapLibre colour expression equivalent to colorOf (interpolated)
function colorExpr(key, lo, hi, ramp) {
  if (!(hi > lo)) hi = lo + 1;
  const stops = ramp.flatMap((c, i) => [lo + ((hi - lo) * i) / (ramp.length - 1), c]);
  return ["case", ["==", ["typeof", ["get", key]], "number"], ["interpolate", ["linear"], ["get", key], ...stops], "#d5dbe1"];
}

function miniMap(fc, key, lo, hi, ramp, label, bbox) {
  const [x0, y0, x1, y1] = bbox;
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const W = 240, sx = W / Math.max(1e-9, (x1 - x0) * k), Hh = Math.max(60, Math.round((y1 - y0) * sx));
  const px = (c) => `${((c[0] - x0) * k * sx).toFixed(1)},${((y1 - c[1]) * sx).toFixed(1)}`;
  const ring = (r) => "M" + r.map(px).join("L") + "Z";
  const shapes = [];
  for (const f of fc.features) {
    const g = f.geometry; if (!g) continue;
    const fill = colorOf(f.properties[key], lo, hi, ramp);
    if (g.type === "Polygon") shapes.push(h("svg:path", { d: g.coordinates.map(ring).join(""), fill, stroke: "#4a5560", "stroke-width": 0.5 }));
    else if (g.type === "MultiPolygon") shapes.push(h("svg:path", { d: g.coordinates.flatMap((p) => p.map(ring)).join(""), fill, stroke: "#4a5560", "stroke-width": 0.5 }));
    else if (g.type === "Point") { const [cx, cy] = px(g.coordinates).split(","); shapes.push(h("svg:circle", { cx, cy, r: 4, fill, stroke: "#1b1f24" })); }
  }
  return h("figure", {}, h("figcaption", { text: label }), h("svg:svg", { viewBox: `0 0 ${W} ${Hh}`, role: "img", "aria-label": label }, shapes));
}

export class Analysis {
  constructor(twin) {
    this.twin = twin;
    this.models = [];
    this.edits = [];
    this.scenarioId = null;
    this.last = null;
  }

  headers(json) {
    const hd = { Accept: "application/json" };
    if (this.twin.tenant) hd["NGSILD-Tenant"] = this.twin.tenant;
    if (json) hd["Content-Type"] = "application/json";
    return hd;
  }

  async init() {
    const base = this.twin.analysisApi;
    try {
      this.models = await getJSON(`${base}/models`, { headers: this.headers() });
    } catch (e) {
      $("#analysis-unavailable").hidden = false;
      this.available = false;
      return;
    }
    this.available = true;
    const sel = $("#analysis-model");
    sel.replaceChildren(...this.models.map((m) => h("option", { value: m.id, text: m.name })));
    const describe = () => { const m = this.models.find((x) => x.id === sel.value); $("#analysis-description").textContent = m ? m.description || "" : ""; };
    sel.addEventListener("change", describe);
    describe();
    $("#analysis-form").hidden = false;
    $("#scenario").hidden = false;
    $("#analysis-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.run(); });
    $("#analysis-clear").addEventListener("click", () => this.clear());
    for (const b of document.querySelectorAll("#scenario [data-edit]")) b.addEventListener("click", () => this.addEdit(b.dataset.edit));
    $("#scenario-compare").addEventListener("click", () => this.compare());
    $("#scenario-reset").addEventListener("click", () => { this.edits = []; this.showEdits(); $("#scenario-result").replaceChildren(); });
    this.showEdits();
  }

  model() { return this.models.find((m) => m.id === $("#analysis-model").value); }

  unitOf(run) { return run.unit === "1" ? t("unit.share") : unitText(run.unit); }

  async run() {
    const m = this.model(); if (!m) return;
    const out = $("#analysis-result");
    out.replaceChildren(h("p", { text: t("twin.analysis.running") }));
    try {
      const run = await getJSON(`${this.twin.analysisApi}/runs`, { method: "POST", headers: this.headers(true),
        body: JSON.stringify({ model: m.id, parameters: {}, scenario: null }) });
      this.last = run;
      this.draw(run.geojson, "value", SEQ, this.unitOf(run), m.name);
      const items = Object.entries(run.summary || {}).filter(([, v]) => typeof v !== "object")
        .map(([k, v]) => [h("dt", { text: k }), h("dd", { text: fmtNumber(v) })]);
      out.replaceChildren(h("p", { text: t("twin.analysis.result", { model: m.name }) }),
        h("h3", { text: t("twin.analysis.summary") }), h("dl", { class: "small" }, items));
      announce(t("twin.analysis.result", { model: m.name }));
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", text: t("common.error", { detail: e.message }) }));
    }
  }

  draw(fc, key, ramp, unit, label, range) {
    const [lo, hi] = range || valueRange(fc.features, key);
    this.twin.showAnalysisLayer(fc, colorExpr(key, lo, hi, ramp));
    $("#analysis-clear").hidden = false;
    const legend = $("#analysis-legend");
    legend.hidden = false;
    legend.replaceChildren(h("h2", { class: "group", text: t("layer.analysis") }),
      h("p", { class: "small", text: label }),
      h("ul", { class: "ramp" }, ramp.map((c, i) => h("li", {}, h("span", { class: "swatch", style: `background:${c}`, "aria-hidden": "true" }),
        fmtNumber(+(lo + ((hi - lo) * i) / (ramp.length - 1)).toFixed(3)))), h("li", { class: "unit", text: unit })));
  }

  clear() {
    this.twin.showAnalysisLayer(null);
    $("#analysis-clear").hidden = true;
    $("#analysis-legend").hidden = true;
    $("#analysis-result").replaceChildren();
  }

  // ---- scenario -------------------------------------------------------------------------------
  addEdit(kind) {
    const tw = this.twin;
    const msg = $("#scenario-edits");
    if (kind === "addStop") {
      const c = tw.center();
      this.edits.push({ type: "addStop", name: `Twin stop ${this.edits.length + 1}`, geometry: { type: "Point", coordinates: c } });
    } else if (kind === "removeStop") {
      const sel = tw.selection();
      if (!sel || !sel.id.includes("GtfsStop")) { msg.textContent = t("twin.scenario.noselection"); return; }
      this.edits.push({ type: "removeStop", target: sel.id });
    } else if (kind === "lowEmissionZone") {
      const [x0, y0, x1, y1] = tw.visibleBounds();
      this.edits.push({ type: "lowEmissionZone", reductionPercent: 30,
        geometry: { type: "Polygon", coordinates: [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] } });
    }
    this.showEdits();
  }

  showEdits() {
    $("#scenario-edits").textContent = t("twin.scenario.edits", { count: this.edits.length });
  }

  async compare() {
    const out = $("#scenario-result");
    const m = this.model();
    if (!this.edits.length || !m) { out.replaceChildren(h("p", { text: t("twin.scenario.none") })); return; }
    out.replaceChildren(h("p", { text: t("twin.analysis.running") }));
    const base = this.twin.analysisApi;
    const doc = { name: `Twin scenario (${new Date().toISOString().slice(0, 16)})`, edits: this.edits };
    try {
      if (this.scenarioId) {
        await getJSON(`${base}/scenarios/${this.scenarioId}`, { method: "PUT", headers: this.headers(true), body: JSON.stringify(doc) });
      } else {
        const made = await getJSON(`${base}/scenarios`, { method: "POST", headers: this.headers(true), body: JSON.stringify(doc) });
        this.scenarioId = made.id;
      }
      const cmp = await getJSON(`${base}/scenarios/${this.scenarioId}/compare`, { method: "POST", headers: this.headers(true),
        body: JSON.stringify({ model: m.id, parameters: {} }) });
      this.showCompare(cmp, m);
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", text: t("common.error", { detail: e.message }) }));
    }
  }

  showCompare(cmp, m) {
    const before = cmp.before.geojson, after = cmp.after.geojson, diff = cmp.difference;
    const all = [...before.features, ...after.features];
    const vals = all.map((f) => f.properties.value).filter((v) => typeof v === "number");
    const lo = vals.length ? Math.min(...vals) : 0, hi = vals.length ? Math.max(...vals) : 1;
    const bbox = bboxOf(all) || [0, 0, 1, 1];
    const unit = this.unitOf(cmp.after);
    const changed = diff.features.filter((f) => typeof f.properties.delta === "number" && Math.abs(f.properties.delta) > 1e-9)
      .sort((a, b) => Math.abs(b.properties.delta) - Math.abs(a.properties.delta));
    const rows = changed.slice(0, 20).map((f) => h("tr", {},
      h("th", { scope: "row", text: f.properties.label || f.properties.id }),
      h("td", { class: "num", text: fmtNumber(f.properties.before) }), h("td", { class: "num", text: fmtNumber(f.properties.after) }),
      h("td", { class: `num ${f.properties.delta > 0 ? "delta-up" : "delta-down"}`, text: (f.properties.delta > 0 ? "+" : "") + fmtNumber(+f.properties.delta.toFixed(4)) })));
    const summary = t("twin.scenario.changed", { count: changed.length });
    $("#scenario-result").replaceChildren(
      h("div", { class: "compare", id: "compare-maps" },
        miniMap(before, "value", lo, hi, SEQ, `${t("twin.scenario.before")} — ${m.name}`, bbox),
        miniMap(after, "value", lo, hi, SEQ, `${t("twin.scenario.after")} — ${m.name}`, bbox)),
      h("p", { id: "compare-summary", text: summary }),
      h("table", { id: "compare-table", class: "small" },
        h("caption", { text: `${t("twin.scenario.difference")} (${unit})` }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("twin.scenario.feature") }), h("th", { scope: "col", text: t("twin.scenario.before") }),
          h("th", { scope: "col", text: t("twin.scenario.after") }), h("th", { scope: "col", text: t("twin.scenario.difference") }))),
        h("tbody", {}, rows)));
    const [dlo, dhi] = valueRange(diff.features, "delta");
    const bound = Math.max(Math.abs(dlo), Math.abs(dhi)) || 1;
    this.draw(diff, "delta", DIV, unit, `${t("twin.scenario.difference")} — ${m.name}`, [-bound, bound]);
    announce(summary);
    this.lastCompare = cmp;
  }
}
