// The Urban Digital Twin page. The city is drawn only from its own data (GeoJSON per layer from
// /twin/api, no basemap tiles, no fonts), kept live by Server-Sent Events, replayed in time from
// the temporal history. Everything the map shows is also reachable without it: real checkboxes for
// layers, a search, a feature list and a panel with tables (window.urbanmimTwin is for tests).
import * as maplibregl from "/web/static/vendor/maplibre-gl/maplibre-gl.mjs";
import { $, announce, bboxOf, fmtNumber, fmtTime, getJSON, h, t, unitText } from "./dom.js";
import { Panel } from "./panel.js";
import { Analysis } from "./analysis.js";

const cfg = JSON.parse($("#twin-config").textContent);
const LIST_MAX = 300;
const STEP_MIN = 15;            // time slider: one step = 15 minutes
const NO_DATA = "#9aa5b1";
const FIRST = ["districts", "buildings"];    // the layers of the first meaningful paint

class Twin {
  constructor() {
    this.api = cfg.api;
    this.analysisApi = cfg.analysis;
    this.tenant = cfg.tenant;
    this.layers = new Map(cfg.layers.map((l) => [l.id, l]));
    this.visible = new Map(cfg.layers.map((l) => [l.id, l.visible]));
    this.features = new Map();       // layer id -> Map(entity id -> feature), the live state
    this.replay = null;              // null = live; else { at: ms, values: Map(layer -> {id: {value, observedAt}}) }
    this.changes = 0;
    this.lastChange = {};            // entity id -> {at: performance.now(), value}
    this.three = true;
    this.ready = false;
    this.map = null;
    this.mapLayers = new Map();      // layer id -> MapLibre layer ids
    this.dirty = new Set();
    this.panel = new Panel(this);
    this.analysis = new Analysis(this);
    this.selected = null;
    this.rows = new Map();
    this.loadSeq = 0;
    this.initialBounds = !!cfg.bounds;   // the map opens on the city: no fit needed for the first load
  }

  // ---- start --------------------------------------------------------------------------------
  start() {
    this.bindControls();
    performance.mark("twin:start");
    const prefetched = this.fetchLayers();      // the data loads while MapLibre starts
    try {
      this.map = new maplibregl.Map({
        container: "map", attributionControl: false, maxPitch: 70, pitch: 45,
        ...(cfg.bounds ? { bounds: cfg.bounds, fitBoundsOptions: { padding: 30 } } : { center: [0, 0], zoom: 1 }),
        style: { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#e9edf1" } }] },
      });
      this.map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-right");
      this.map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
      // only what the first frame shows gets a source now: every source costs the map's worker a round
      // trip, and it is cold at start; the others are added right after that first frame
      this.map.on("load", () => { performance.mark("twin:map-load"); this.addMapLayers(FIRST); this.loadCity(prefetched); });
      this.map.on("error", (e) => console.warn("map:", e && e.error ? e.error.message : e));
    } catch (e) {
      console.warn("no map:", e);
      this.map = null;
      $("#map-unavailable").hidden = false;
      this.loadCity(prefetched);
    }
    this.analysis.init();
  }

  bindControls() {
    for (const box of document.querySelectorAll("#layers input[data-layer]")) {
      box.addEventListener("change", () => this.setVisible(box.dataset.layer, box.checked));
    }
    $("#toggle-3d").addEventListener("click", () => this.set3d(!this.three));
    $("#city").addEventListener("change", (ev) => this.switchCity(ev.target.value));
    let timer = null;
    $("#time-slider").addEventListener("input", (ev) => {
      this.describeSlider();
      clearTimeout(timer);
      timer = setTimeout(() => this.setTime(+ev.target.value), 200);
    });
    $("#time-live").addEventListener("click", () => { $("#time-slider").value = 0; this.setTime(0); $("#time-slider").focus(); });
    let stimer = null;
    $("#search").addEventListener("input", () => { clearTimeout(stimer); stimer = setTimeout(() => this.search(), 150); });
    $("#list-layer").addEventListener("change", () => this.renderList());
  }

  // ---- map layers (created once; sources refilled per city) -------------------------------------
  addMapLayers(ids) {
    const m = this.map;
    if (!m) return;
    const add = (layerId, spec) => { m.addLayer(spec); this.mapLayers.get(layerId).push(spec.id); };
    for (const l of this.layers.values()) {
      if (!ids.includes(l.id) || this.mapLayers.has(l.id)) continue;
      m.addSource(`src-${l.id}`, { type: "geojson", data: { type: "FeatureCollection", features: [] }, promoteId: "id",
        maxzoom: 16, buffer: 32, tolerance: 0.5 });   // city-scale data: less tiling work in the worker
      this.mapLayers.set(l.id, []);
      const vis = this.visible.get(l.id) ? "visible" : "none";
      const ramp = l.stops.length ? ["step", ["get", "v"], ...l.colors.flatMap((c, i) => (i === 0 ? [c] : [l.stops[i - 1], c]))] : l.color;
      const color = l.stops.length ? ["case", ["==", ["typeof", ["get", "v"]], "number"], ramp, NO_DATA] : l.color;
      if (l.kind === "fill") {
        add(l.id, { id: `${l.id}-fill`, type: "fill", source: `src-${l.id}`, layout: { visibility: vis }, paint: { "fill-color": color, "fill-opacity": 0.18 } });
        add(l.id, { id: `${l.id}-line`, type: "line", source: `src-${l.id}`, layout: { visibility: vis }, paint: { "line-color": "#3d4d60", "line-width": 1.5 } });
      } else if (l.kind === "extrusion") {
        add(l.id, { id: `${l.id}-3d`, type: "fill-extrusion", source: `src-${l.id}`, layout: { visibility: vis },
          paint: { "fill-extrusion-color": color, "fill-extrusion-height": ["coalesce", ["get", "v"], 3], "fill-extrusion-opacity": 0.9 } });
        add(l.id, { id: `${l.id}-2d`, type: "fill", source: `src-${l.id}`, layout: { visibility: "none" }, paint: { "fill-color": color, "fill-outline-color": "#4a5560" } });
      } else if (l.kind === "line") {
        add(l.id, { id: `${l.id}-line`, type: "line", source: `src-${l.id}`, layout: { visibility: vis, "line-cap": "round" }, paint: { "line-color": l.color, "line-width": 2.5, "line-opacity": 0.8 } });
      } else {
        const r = l.group === "sensors" ? 6 : 3.5;
        add(l.id, { id: `${l.id}-circle`, type: "circle", source: `src-${l.id}`, layout: { visibility: vis },
          paint: { "circle-color": color, "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, r * 0.6, 15, r * 1.6],
            "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } });
      }
      for (const id of this.mapLayers.get(l.id)) {
        m.on("click", id, (e) => { if (e.features && e.features[0]) this.select(e.features[0].properties.id, l.id, false); });
        m.on("mouseenter", id, () => { m.getCanvas().style.cursor = "pointer"; });
        m.on("mouseleave", id, () => { m.getCanvas().style.cursor = ""; });
      }
    }
    if (m.getSource("analysis") || !this.mapLayers.has("buildings")) return;
    m.addSource("analysis", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    m.addLayer({ id: "analysis-fill", type: "fill", source: "analysis", filter: ["!=", ["geometry-type"], "Point"], paint: { "fill-color": "#cccccc", "fill-opacity": 0.65 } }, "buildings-3d");
    m.addLayer({ id: "analysis-circle", type: "circle", source: "analysis", filter: ["==", ["geometry-type"], "Point"], paint: { "circle-color": "#cccccc", "circle-radius": 9, "circle-stroke-color": "#1b1f24", "circle-stroke-width": 1 } });
    m.addSource("selected", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    m.addLayer({ id: "selected-line", type: "line", source: "selected", filter: ["!=", ["geometry-type"], "Point"], paint: { "line-color": "#ffbf47", "line-width": 4 } });
    m.addLayer({ id: "selected-circle", type: "circle", source: "selected", filter: ["==", ["geometry-type"], "Point"], paint: { "circle-radius": 11, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#1b1f24", "circle-stroke-width": 3 } });
  }

  // ---- loading a city ---------------------------------------------------------------------------
  fetchLayers() {
    const early = window.urbanmimTwinPrefetch;     // started by the page before this module loaded
    window.urbanmimTwinPrefetch = null;
    const q = `tenant=${encodeURIComponent(this.tenant)}`;
    const opts = { headers: this.tenantHeaders() };
    const one = (id) => {
      if (early && early.tenant === this.tenant && early.layers[id]) {
        return early.layers[id].then((r) => (r.ok ? r.json() : getJSON(`${this.api}/layers/${id}?${q}`, opts)));
      }
      return getJSON(`${this.api}/layers/${id}?${q}`, opts);
    };
    return { tenant: this.tenant, layers: new Map([...this.layers.keys()].map((id) => [id, one(id)])) };
  }

  async loadCity(prefetched) {
    const seq = ++this.loadSeq;
    this.ready = false;
    this.connect();
    const got = prefetched && prefetched.tenant === this.tenant ? prefetched : this.fetchLayers();
    let drawn;
    const firstFrame = new Promise((resolve) => { drawn = resolve; });
    const fill = (id) => got.layers.get(id).then((fc) => {
      if (seq !== this.loadSeq) return;
      this.features.set(id, new Map(fc.features.map((f) => [f.id, f])));
      if (!this.initialBounds && (id === "districts" || (id === "buildings" && !(this.features.get("districts") || new Map()).size))) this.fit();
      this.refresh(id);                         // after fit: tiles are cut once, at the city's zoom
    });
    // districts and buildings first (what a planner looks at first); the other layers are downloaded
    // meanwhile but handed to the map after that first frame, so they do not delay it
    const first = Promise.all(["districts", "buildings"].map(fill));
    const others = [...this.layers.keys()].filter((id) => !FIRST.includes(id));
    firstFrame.then(() => this.addMapLayers(others));
    const rest = others.map((id) => firstFrame.then(() => fill(id)));
    try {
      await first;
      if (seq !== this.loadSeq) return;
      performance.mark("twin:data");
      this.whenDrawn("src-districts", () => {});      // only its mark: when the worker had the first layer ready
      this.whenDrawn("src-buildings", () => {
        drawn();
        if (seq !== this.loadSeq || this.ready) return;
        this.ready = true;
        performance.mark("twin:ready");        // first meaningful paint: the frame that shows the buildings
        document.documentElement.dataset.twinReady = "true";
      });
      await Promise.all(rest);
      if (seq !== this.loadSeq) return;
      if (this.replay) await this.setTime(+$("#time-slider").value);
      this.renderList();
      let count = 0;
      for (const fs of this.features.values()) count += fs.size;
      announce(t("twin.loaded", { city: this.cityName(), count }));
      document.documentElement.dataset.twinLoaded = this.tenant;
    } catch (e) {
      $("#live-status").textContent = t("common.error", { detail: e.message });
    }
  }

  // fn runs after the first frame rendered once the source's data is loaded (or at once without a map)
  whenDrawn(sourceId, fn) {
    const m = this.map;
    if (!m) { fn(); return; }
    const expected = (this.features.get(sourceId.replace(/^src-/, "")) || new Map()).size;
    const check = () => {
      // loaded and tiled: the next frame draws the features (an empty layer only needs the load)
      if (!m.isSourceLoaded(sourceId) || (expected && !m.querySourceFeatures(sourceId).length)) return;
      m.off("sourcedata", check);
      performance.mark(`twin:${sourceId}-tiled`);
      m.once("render", fn);
      m.triggerRepaint();
    };
    m.on("sourcedata", check);
    check();
  }

  // the tenant also as the NGSI-LD header, which the platform's access layer reads
  tenantHeaders() { return this.tenant ? { "NGSILD-Tenant": this.tenant } : {}; }

  cityName() { return this.tenant ? this.tenant[0].toUpperCase() + this.tenant.slice(1) : ""; }

  fit() {
    if (!this.map) return;
    const fs = [...(this.features.get("districts") || new Map()).values()];
    const bb = bboxOf(fs.length ? fs : [...(this.features.get("buildings") || new Map()).values()]);
    if (bb) this.map.fitBounds([[bb[0], bb[1]], [bb[2], bb[3]]], { padding: 30, duration: 0, pitch: this.three ? 45 : 0 });
  }

  switchCity(tenant) {
    if (tenant === this.tenant) return;
    this.tenant = tenant;
    const url = new URL(location.href);
    url.searchParams.set("tenant", tenant);
    history.replaceState(null, "", url);
    for (const a of document.querySelectorAll(".lang-switch a")) {
      const u = new URL(a.href, location.href); u.searchParams.set("tenant", tenant); a.href = u.pathname + u.search;
    }
    $("#map").setAttribute("aria-label", t("twin.map.label", { city: this.cityName() }));
    this.features.clear();
    for (const id of this.layers.keys()) this.refresh(id);
    this.panel.clear();
    this.selected = null;
    this.showAnalysisLayer(null);
    this.analysis.scenarioId = null;
    this.initialBounds = false;
    this.loadCity();
  }

  // ---- what is drawn -------------------------------------------------------------------------------
  valueOf(layer, f) {
    if (this.replay && layer.live) {
      const vals = this.replay.values.get(layer.id);
      const r = vals && vals[f.id];
      return r ? r.value : null;
    }
    return layer.attr ? f.properties[layer.attr] : null;
  }

  displayed(id) {
    const layer = this.layers.get(id);
    const fs = [...(this.features.get(id) || new Map()).values()];
    if (!layer.attr) return fs;
    if (this.replay && layer.live) {        // a replayed instant: copies, the live features stay as they are
      return fs.map((f) => ({ ...f, properties: { ...f.properties, v: this.valueOf(layer, f) } }));
    }
    for (const f of fs) f.properties.v = f.properties[layer.attr];   // live: the value is the attribute's own
    return fs;
  }

  refresh(id) {
    if (!this.map) return;
    const src = this.map.getSource(`src-${id}`);
    if (src) src.setData({ type: "FeatureCollection", features: this.displayed(id) });
  }

  setVisible(id, on) {
    this.visible.set(id, on);
    if (this.map) {
      for (const mid of this.mapLayers.get(id) || []) {
        const is2d = mid.endsWith("-2d"), is3d = mid.endsWith("-3d");
        const show = on && !(is2d && this.three) && !(is3d && !this.three);
        this.map.setLayoutProperty(mid, "visibility", show ? "visible" : "none");
      }
    }
  }

  set3d(on) {
    this.three = on;
    $("#toggle-3d").setAttribute("aria-pressed", String(on));
    this.setVisible("buildings", this.visible.get("buildings"));
    if (this.map) this.map.easeTo({ pitch: on ? 45 : 0, duration: 400 });
  }

  // ---- live -------------------------------------------------------------------------------------------
  connect() {
    if (this.source) this.source.close();
    const es = new EventSource(`${this.api}/events?tenant=${encodeURIComponent(this.tenant)}`);
    this.source = es;
    es.addEventListener("hello", () => { this.connected = true; this.status(); });
    es.addEventListener("change", (ev) => this.onChanges(JSON.parse(ev.data)));
    es.addEventListener("resync", () => this.loadCity());
    es.onerror = () => { this.connected = false; this.status(); };
  }

  onChanges(events) {
    for (const ev of events) {
      const fs = this.features.get(ev.layer);
      if (!fs) continue;
      if (ev.op === "delete") fs.delete(ev.id);
      else if (ev.feature) fs.set(ev.id, ev.feature);
      else continue;
      this.dirty.add(ev.layer);
      const layer = this.layers.get(ev.layer);
      this.lastChange[ev.id] = { at: performance.now(), value: ev.feature && layer.attr ? ev.feature.properties[layer.attr] : null };
      this.changes += 1;
      this.lastAt = ev.at;
      this.panel.changed(ev.id);
      if (this.selected && this.selected.id === ev.id && ev.feature && layer.attr) {   // screen readers follow it
        const v = ev.feature.properties[layer.attr];
        announce(t("twin.panel.updated", { name: ev.feature.properties.name || ev.id, value: `${fmtNumber(v)} ${unitText(layer.unit)}` }));
      }
      this.updateRow(ev.id, ev.layer);
    }
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 30);
    this.status();
  }

  flush() {
    this.flushTimer = null;
    for (const id of this.dirty) this.refresh(id);
    this.dirty.clear();
  }

  status() {
    const el = $("#live-status");
    if (!this.connected) { el.textContent = t("twin.live.disconnected"); return; }
    el.textContent = this.changes ? t("twin.live.count", { count: this.changes, time: fmtTime(this.lastAt) }) : t("twin.live.connected");
  }

  // ---- time -----------------------------------------------------------------------------------------
  sliderTime(v) { return Date.now() + v * STEP_MIN * 60000; }

  describeSlider() {
    const v = +$("#time-slider").value;
    const text = v === 0 ? t("twin.time.live") : t("twin.time.at", { time: fmtTime(new Date(this.sliderTime(v)).toISOString()) });
    $("#time-slider").setAttribute("aria-valuetext", text);
    return text;
  }

  async setTime(v) {
    const text = this.describeSlider();
    $("#time-status").textContent = text;
    $("#time-live").hidden = v === 0;
    if (v === 0) {
      this.replay = null;
    } else {
      const at = Math.round(this.sliderTime(v));
      const live = [...this.layers.values()].filter((l) => l.live);
      const q = `tenant=${encodeURIComponent(this.tenant)}&at=${at}`;
      const got = await Promise.all(live.map((l) => getJSON(`${this.api}/layers/${l.id}?${q}`, { headers: this.tenantHeaders() })
        .then((r) => [l.id, r.values])));
      if (+$("#time-slider").value !== v) return;       // moved again meanwhile
      this.replay = { at, values: new Map(got) };
    }
    for (const l of this.layers.values()) if (l.live) this.refresh(l.id);
    this.renderList();
    document.documentElement.dataset.twinTime = String(v);
  }

  // ---- selection, search, list -----------------------------------------------------------------------
  findFeature(id, layerId) {
    if (layerId && this.features.get(layerId)) return this.features.get(layerId).get(id);
    for (const fs of this.features.values()) if (fs.has(id)) return fs.get(id);
    return null;
  }

  selection() { return this.selected; }

  select(id, layerId, move = true) {
    const f = this.findFeature(id, layerId);
    if (!f) return;
    const layer = this.layers.get(f.properties.layer || layerId);
    this.selected = { id, layer: layer.id };
    if (this.map && this.map.getSource("selected")) {
      this.map.getSource("selected").setData({ type: "FeatureCollection", features: [f] });
      if (move) {
        const bb = bboxOf([f]);
        this.map.easeTo({ center: [(bb[0] + bb[2]) / 2, (bb[1] + bb[3]) / 2], zoom: Math.max(this.map.getZoom(), 15), duration: 500 });
      }
    }
    this.panel.show(id, layer);
  }

  search() {
    const q = $("#search").value.trim().toLowerCase();
    const out = $("#search-results");
    const status = $("#search-status");
    if (q.length < 2) { out.replaceChildren(); status.textContent = ""; return; }
    const hits = [];
    for (const [lid, fs] of this.features) {
      for (const f of fs.values()) {
        const name = f.properties.name;
        if (name && name.toLowerCase().includes(q)) hits.push([name, lid, f.id]);
      }
    }
    hits.sort((a, b) => a[0].localeCompare(b[0], document.documentElement.lang));
    status.textContent = hits.length ? t("twin.search.results", { count: hits.length }) : t("twin.search.none");
    out.replaceChildren(...hits.slice(0, 10).map(([name, lid, id]) => h("li", {},
      h("button", { type: "button", on: { click: () => this.select(id, lid) } }, `${name} — ${t("layer." + lid)}`))));
  }

  rowValue(layer, f) {
    const v = this.valueOf(layer, f);
    if (!layer.attr) return "—";
    return v === null || v === undefined ? t("twin.nodata") : `${fmtNumber(v)} ${unitText(layer.unit)}`;
  }

  rowObserved(layer, f) {
    if (this.replay && layer.live) {
      const r = (this.replay.values.get(layer.id) || {})[f.id];
      return fmtTime(r && r.observedAt);
    }
    return fmtTime(f.properties.observedAt);
  }

  renderList() {
    const layer = this.layers.get($("#list-layer").value);
    const fs = [...(this.features.get(layer.id) || new Map()).values()];
    fs.sort((a, b) => String(a.properties.name || a.id).localeCompare(String(b.properties.name || b.id), document.documentElement.lang));
    this.rows = new Map();
    const rows = fs.slice(0, LIST_MAX).map((f) => {
      const name = f.properties.name || f.id;
      const tr = h("tr", { "data-id": f.id },
        h("td", { text: name }), h("td", { class: "num", text: this.rowValue(layer, f) }), h("td", { text: this.rowObserved(layer, f) }),
        h("td", {}, h("button", { type: "button", "aria-label": t("twin.list.show", { name }), on: { click: () => this.select(f.id, layer.id) } }, "→")));
      this.rows.set(f.id, tr);
      return tr;
    });
    $("#list-table tbody").replaceChildren(...rows);
    $("#list-count").textContent = t("twin.list.count", { count: fs.length });
    const more = $("#list-more");
    more.hidden = fs.length <= LIST_MAX;
    more.textContent = t("twin.list.more", { shown: LIST_MAX, count: fs.length });
  }

  updateRow(id, layerId) {
    if ($("#list-layer").value !== layerId) return;
    const tr = this.rows.get(id);
    const f = this.features.get(layerId).get(id);
    if (!tr || !f) { if (!tr && f) this.renderList(); return; }
    const layer = this.layers.get(layerId);
    tr.children[1].textContent = this.rowValue(layer, f);
    tr.children[2].textContent = this.rowObserved(layer, f);
  }

  // ---- for the analysis panel --------------------------------------------------------------------------
  center() { return this.map ? this.map.getCenter().toArray() : (bboxOf([...(this.features.get("districts") || new Map()).values()]) || [0, 0]).slice(0, 2); }

  visibleBounds() {
    if (this.map) { const b = this.map.getBounds(); return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; }
    return bboxOf([...(this.features.get("districts") || new Map()).values()]) || [0, 0, 0, 0];
  }

  showAnalysisLayer(fc, colorExpr) {
    this.analysisShown = fc ? fc.features.length : 0;
    if (!this.map || !this.map.getSource("analysis")) return;
    this.map.getSource("analysis").setData(fc || { type: "FeatureCollection", features: [] });
    if (fc && colorExpr) {
      this.map.setPaintProperty("analysis-fill", "fill-color", colorExpr);
      this.map.setPaintProperty("analysis-circle", "circle-color", colorExpr);
    }
  }
}

const twin = new Twin();
window.urbanmimTwin = twin;
twin.start();
