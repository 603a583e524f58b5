// Small DOM and formatting helpers shared by the twin's modules. Text always goes in through
// textContent (never innerHTML), so entity names and values can never inject markup.
const I18N = window.urbanmimI18n;
export const t = I18N.t;
export const lang = I18N.lang;
export const locale = I18N.locale;

export function h(tag, attrs, ...children) {
  const el = document.createElementNS(tag.startsWith("svg:") ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag.replace(/^svg:/, ""));
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") { for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn); }
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel) => document.querySelector(sel);

export function fmtNumber(v) {
  return typeof v === "number" ? I18N.number(v) : v === null || v === undefined ? t("twin.nodata") : String(v);
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString(locale, { dateStyle: "short", timeStyle: "medium" });
}

// UN/CEFACT unit codes (NGSI-LD unitCode) → catalogue keys
const UNIT_CODES = { GQ: "unit.ugm3", GP: "unit.mgm3", "2N": "unit.dba", CEL: "unit.celsius", MTR: "unit.m", KMH: "unit.kmh",
  MTS: "unit.ms", P1: "unit.percent" };
export function unitText(code) {
  if (!code) return "";
  if (code.startsWith("unit.")) return t(code);
  return UNIT_CODES[code] ? t(UNIT_CODES[code]) : code === "C62" || code === "1" ? "" : code;
}

let announceTimer = null;
// Polite screen-reader announcements, at most one every 1.5 s (the latest wins).
export function announce(text) {
  const el = $("#announcer");
  if (!el) return;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { el.textContent = ""; el.textContent = text; }, 150);
}

export async function getJSON(url, opts) {
  const resp = await fetch(url, opts);
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(detail);
    err.status = resp.status;
    throw err;
  }
  return resp.status === 204 ? null : resp.json();
}

// A colour for a value on a layer's class ramp (stops ascending, colors.length = stops.length + 1).
export function rampColor(stops, colors, v) {
  if (typeof v !== "number") return "#9aa5b1";
  let i = 0;
  while (i < stops.length && v >= stops[i]) i++;
  return colors[i];
}

export function bboxOf(features) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      if (c[0] < minX) minX = c[0]; if (c[0] > maxX) maxX = c[0];
      if (c[1] < minY) minY = c[1]; if (c[1] > maxY) maxY = c[1];
    } else c.forEach(walk);
  };
  for (const f of features) if (f.geometry && f.geometry.coordinates) walk(f.geometry.coordinates);
  return minX === Infinity ? null : [minX, minY, maxX, maxY];
}
