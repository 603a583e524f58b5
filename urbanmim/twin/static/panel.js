// The selected-feature panel: its attributes (from /twin/api/entity) and a small chart of the
// recent history of its layer's attribute (inline SVG) with the same data as a table.
import { $, announce, fmtNumber, fmtTime, getJSON, h, locale, t, unitText } from "./dom.js";

const HOURS = 24;
const W = 300, H = 120, PAD = { l: 38, r: 8, t: 8, b: 20 };

export function chart(points, label) {
  const vals = points.map((p) => p.v);
  const times = points.map((p) => Date.parse(p.t));
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (lo === hi) { lo -= 1; hi += 1; }
  const t0 = Math.min(...times), t1 = Math.max(...times) || t0 + 1;
  const x = (ms) => PAD.l + ((ms - t0) / Math.max(1, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => PAD.t + (1 - (v - lo) / (hi - lo)) * (H - PAD.t - PAD.b);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(times[i]).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  const long = t1 - t0 > 12 * 3600 * 1000;      // more than half a day: the date too
  const fmtAxis = (ms) => new Date(ms).toLocaleString(locale, long ? { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" });
  return h("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    h("svg:line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, stroke: "#4a5560" }),
    h("svg:line", { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b, stroke: "#4a5560" }),
    h("svg:text", { x: PAD.l - 4, y: PAD.t + 8, "text-anchor": "end", "font-size": 10, fill: "#1b1f24" }, fmtNumber(hi)),
    h("svg:text", { x: PAD.l - 4, y: H - PAD.b, "text-anchor": "end", "font-size": 10, fill: "#1b1f24" }, fmtNumber(lo)),
    h("svg:text", { x: PAD.l, y: H - 5, "font-size": 10, fill: "#1b1f24" }, fmtAxis(t0)),
    h("svg:text", { x: W - PAD.r, y: H - 5, "text-anchor": "end", "font-size": 10, fill: "#1b1f24" }, fmtAxis(t1)),
    h("svg:path", { d: path, fill: "none", stroke: "#0b4f8a", "stroke-width": 2 }));
}

function historyBlock(hist, attrLabel) {
  const pts = hist.points;
  const unit = unitText(hist.unitCode);
  const title = t("twin.panel.history", { attr: attrLabel, hours: HOURS });
  if (!pts.length) return h("div", { class: "history" }, h("h3", { text: title }), h("p", { class: "muted", text: t("twin.panel.history.none") }));
  const vals = pts.map((p) => p.v);
  const summary = t("twin.panel.history.summary", { count: pts.length, min: fmtNumber(Math.min(...vals)), max: fmtNumber(Math.max(...vals)), unit });
  const rows = pts.slice(-48).reverse().map((p) => h("tr", {}, h("td", { text: fmtTime(p.t) }), h("td", { class: "num", text: fmtNumber(p.v) })));
  return h("div", { class: "history" },
    h("h3", { text: title }),
    chart(pts, `${title}: ${summary}`),
    h("p", { class: "small muted", text: summary }),
    h("details", {}, h("summary", { text: t("twin.panel.history.table") }),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("twin.panel.history.time") }),
        h("th", { scope: "col", text: `${attrLabel}${unit ? " (" + unit + ")" : ""}` }))), h("tbody", {}, rows))));
}

function attrRows(props) {
  const skip = new Set(["id", "type", "observedAt", "unitCode", "modifiedAt", "layer", "v", "label"]);
  const rows = [];
  for (const [k, v] of Object.entries(props)) {
    if (skip.has(k)) continue;
    const shown = v !== null && typeof v === "object" ? Object.values(v).filter((x) => typeof x !== "object").join(", ") || JSON.stringify(v) : fmtNumber(v);
    const unit = unitText((props.unitCode || {})[k]);
    rows.push(h("tr", {}, h("th", { scope: "row", text: k }), h("td", { text: unit ? `${shown} ${unit}` : shown })));
  }
  return rows;
}

export class Panel {
  constructor(twin) {
    this.twin = twin;
    this.body = $("#panel-body");
    this.current = null;
    this.seq = 0;
  }

  clear() {
    this.current = null;
    this.body.replaceChildren(h("p", { class: "muted", text: t("twin.panel.empty") }));
  }

  async show(id, layer, quiet = false) {
    const seq = ++this.seq;
    this.current = { id, layer };
    const tw = this.twin;
    const q = `tenant=${encodeURIComponent(tw.tenant)}&id=${encodeURIComponent(id)}`;
    let props;
    try {
      props = await getJSON(`${tw.api}/entity?${q}`, { headers: tw.tenantHeaders() });
    } catch (e) {
      this.body.replaceChildren(h("p", { class: "error", text: t("common.error", { detail: e.message }) }));
      return;
    }
    if (seq !== this.seq) return;
    const name = props.label || props.name || t("twin.unnamed");
    const parts = [
      h("h3", { id: "panel-name", tabindex: "-1", text: name }),
      h("p", { class: "muted small", text: `${props.type} · ${id}` }),
      h("table", { id: "panel-attrs" }, h("caption", { class: "visually-hidden", text: t("twin.panel.attributes") }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("twin.panel.attribute") }), h("th", { scope: "col", text: t("twin.panel.value") }))),
        h("tbody", {}, attrRows(props))),
      h("div", { id: "panel-history" }),
    ];
    this.body.replaceChildren(...parts);
    if (!quiet) announce(t("twin.selected", { name }));
    if (layer && layer.attr && layer.live) {
      try {
        const hist = await getJSON(`${tw.api}/history?${q}&attr=${encodeURIComponent(layer.attr)}&hours=${HOURS}`,
          { headers: tw.tenantHeaders() });
        if (seq !== this.seq) return;
        $("#panel-history").replaceChildren(historyBlock(hist, layer.attr));
      } catch (e) {
        $("#panel-history").replaceChildren(h("p", { class: "error", text: t("common.error", { detail: e.message }) }));
      }
    }
  }

  // a live change of the selected entity: refresh the panel quietly
  changed(id) {
    if (this.current && this.current.id === id) {
      const { layer } = this.current;
      clearTimeout(this.refresh);
      this.refresh = setTimeout(() => this.show(id, layer, true), 300);
    }
  }
}
