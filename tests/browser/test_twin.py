"""The twin in real Chromium: each demo city loads and is drawn, layers toggle, live updates arrive
within a second, the time slider replays history, features can be selected (map, list, search),
the language switches, a what-if scenario shows before/after, and axe-core finds no serious or
critical WCAG violation. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, LiveServer, shot

CITIES = {"portamar": 1500, "lindmark": 700, "valdoria": 300}   # buildings per demo city (docs/demo-cities.md)
PAINT_GOAL_MS = float(os.environ.get("URBANMIM_TWIN_PAINT_MS", "2000"))
VIEWPORT_FOR_PAINT = {"width": 1366, "height": 900}


def open_twin(page: Any, server: LiveServer, tenant: str, lang: str | None = None) -> None:
    url = f"{server.base}/twin/?tenant={tenant}" + (f"&lang={lang}" if lang else "")
    page.goto(url)
    page.wait_for_function(f"document.documentElement.dataset.twinLoaded === '{tenant}'", timeout=30_000)
    page.wait_for_function("document.documentElement.dataset.twinReady === 'true'", timeout=30_000)


def real_errors(page: Any) -> list[str]:
    return [e for e in page.errors if "GL Driver Message" not in e]


def rendered(page: Any, map_layer: str) -> int:
    return int(page.evaluate(f"urbanmimTwin.map.queryRenderedFeatures({{layers: ['{map_layer}']}}).length"))


def patch(server: LiveServer, tenant: str, entity_id: str, subject: str, attrs: dict[str, Any]) -> httpx.Response:
    ctx = f"{server.base}/ngsi-ld/v1/jsonldContexts/sdm-{subject}"
    return httpx.patch(f"{server.base}/ngsi-ld/v1/entities/{entity_id}/attrs", json=attrs, timeout=5, headers={
        "NGSILD-Tenant": tenant,
        "Link": f'<{ctx}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'})


@pytest.mark.parametrize("tenant", list(CITIES))
def test_twin_loads_and_draws_each_demo_city(page: Any, twin_server: LiveServer, tenant: str) -> None:
    open_twin(page, twin_server, tenant)
    counts = page.evaluate("Object.fromEntries([...urbanmimTwin.features].map(([k, v]) => [k, v.size]))")
    assert counts["buildings"] == CITIES[tenant]
    assert counts["districts"] > 0 and counts["air"] > 0 and counts["stops"] > 0 and counts["transit"] > 0
    page.wait_for_timeout(300)
    assert rendered(page, "buildings-3d") > 0          # extruded buildings are on screen
    assert rendered(page, "districts-fill") > 0
    assert page.locator("#city").input_value() == tenant
    assert page.locator("#list-table tbody tr").count() == counts["air"]
    assert not real_errors(page), page.errors
    shot(page, f"twin-{tenant}")


def test_city_switch_without_reload(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    page.select_option("#city", "lindmark")
    page.wait_for_function("document.documentElement.dataset.twinLoaded === 'lindmark'", timeout=30_000)
    assert page.evaluate("urbanmimTwin.features.get('buildings').size") == CITIES["lindmark"]
    assert "tenant=lindmark" in page.url
    assert "tenant=lindmark" in (page.locator(".lang-switch a[hreflang=fr]").get_attribute("href") or "")


def _ready_marks(pg: Any, url: str) -> dict[str, float]:
    pg.goto(url)
    pg.wait_for_function("document.documentElement.dataset.twinReady === 'true'", timeout=30_000)
    return dict(pg.evaluate("Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"))


def test_first_meaningful_paint_of_the_capital(browser: Any, twin_server: LiveServer) -> None:
    """Navigation start → the first frame showing portamar's buildings (``twin:ready``), 5,237 entities.

    Cold: a new browser context per load (no HTTP or compiled-code cache: a first visit). Warm: reloads
    in one context (a returning visitor). The assertion is on the cold median."""
    url = f"{twin_server.base}/twin/?tenant=portamar"
    httpx.get(url, timeout=30)       # the server's layer cache is filled by the first visitor, not timed here
    for layer in ("districts", "buildings"):
        httpx.get(f"{twin_server.base}/twin/api/layers/{layer}?tenant=portamar", timeout=30)
    cold = []
    for _ in range(3):
        context = browser.new_context(viewport=VIEWPORT_FOR_PAINT)
        cold.append(_ready_marks(context.new_page(), url))
        context.close()
    context = browser.new_context(viewport=VIEWPORT_FOR_PAINT)
    pg = context.new_page()
    warm = [_ready_marks(pg, url) for _ in range(4)][1:]
    context.close()
    cold_ms = [m["twin:ready"] for m in cold]
    warm_ms = [m["twin:ready"] for m in warm]
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "first-paint.json").write_text(json.dumps({
        "entities": 5237, "cold_marks_ms": cold, "warm_marks_ms": warm, "cold_median_ms": statistics.median(cold_ms),
        "warm_median_ms": statistics.median(warm_ms), "load_average_1min": load, "cores": cores}, indent=1))
    print(f"twin:ready portamar: cold {[round(r) for r in cold_ms]} ms (median {statistics.median(cold_ms):.0f}), "
          f"warm {[round(r) for r in warm_ms]} ms (median {statistics.median(warm_ms):.0f}); "
          f"load average {load:.1f} on {cores} cores")
    # The goal holds on a machine that is not oversubscribed; when other work already keeps every core
    # busy (load average above the core count) the figure measures the neighbours, so the bound doubles.
    goal = PAINT_GOAL_MS if load <= cores else 2 * PAINT_GOAL_MS
    assert statistics.median(cold_ms) < goal, (cold_ms, load)


def test_layers_toggle_with_keyboard(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    assert rendered(page, "air-circle") > 0
    box = page.locator("#layer-air")
    box.focus()
    page.keyboard.press("Space")                       # a real checkbox: Space toggles it
    assert not box.is_checked()
    assert page.evaluate("urbanmimTwin.map.getLayoutProperty('air-circle', 'visibility')") == "none"
    page.wait_for_timeout(200)
    assert rendered(page, "air-circle") == 0
    shot(page, "twin-air-off")
    page.keyboard.press("Space")
    assert box.is_checked()
    page.wait_for_timeout(200)
    assert rendered(page, "air-circle") > 0
    # points of interest start hidden, and appear when checked
    assert rendered(page, "poi-circle") == 0
    page.locator("#layer-poi").check()
    page.wait_for_timeout(200)
    assert rendered(page, "poi-circle") > 0
    # 2D / 3D
    page.locator("#toggle-3d").click()
    assert page.locator("#toggle-3d").get_attribute("aria-pressed") == "false"
    assert page.evaluate("urbanmimTwin.map.getLayoutProperty('buildings-2d', 'visibility')") == "visible"
    assert page.evaluate("urbanmimTwin.map.getLayoutProperty('buildings-3d', 'visibility')") == "none"


def test_patched_and_posted_entities_appear_within_a_second(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    sensor = "urn:ngsi-ld:AirQualityObserved:valdoria:1"
    page.wait_for_function("urbanmimTwin.connected === true", timeout=10_000)
    delays = []
    for value in (123.4, 98.7, 111.1):
        t0 = time.monotonic()
        r = patch(twin_server, "valdoria", sensor, "environment", {"no2": {"type": "Property", "value": value,
                                                                          "unitCode": "GQ"}})
        assert r.status_code == 204, r.text
        page.wait_for_function(
            f"(() => {{ const f = urbanmimTwin.features.get('air').get('{sensor}');"
            f" return f && f.properties.no2 === {value}; }})()", timeout=5_000, polling=20)
        delays.append(time.monotonic() - t0)
        row = page.locator(f"#list-table tr[data-id='{sensor}'] td").nth(1)
        assert str(value) in row.inner_text().replace(",", ".")     # the text alternative follows too
    # ... and on the map itself: the source the circles are drawn from holds the new value
    page.wait_for_timeout(200)
    drawn = page.evaluate(f"urbanmimTwin.map.querySourceFeatures('src-air').filter(f => f.properties.id === '{sensor}')"
                          ".map(f => f.properties.no2)")
    assert drawn and set(drawn) == {111.1}
    # a POSTed (new) sensor appears too
    t0 = time.monotonic()
    new_id = "urn:ngsi-ld:AirQualityObserved:valdoria:browser-test"
    ctx = f"{twin_server.base}/ngsi-ld/v1/jsonldContexts/sdm-environment"
    where = {"type": "Point", "coordinates": page.evaluate("urbanmimTwin.center()")}
    r = httpx.post(f"{twin_server.base}/ngsi-ld/v1/entities", timeout=5, json={
        "id": new_id, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 77.0},
        "location": {"type": "GeoProperty", "value": where}},
        headers={"NGSILD-Tenant": "valdoria",
                 "Link": f'<{ctx}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'})
    assert r.status_code == 201, r.text
    page.wait_for_function(f"urbanmimTwin.features.get('air').has('{new_id}')", timeout=5_000, polling=20)
    delays.append(time.monotonic() - t0)
    (ARTIFACTS / "live-delays.json").write_text(json.dumps({"seconds": delays}))
    print("live update delays (s):", [round(d, 3) for d in delays])
    assert max(delays) < 1.0, delays
    assert "4" in page.locator("#live-status").inner_text()        # "4 changes received ..."
    shot(page, "twin-live-update")


def test_time_slider_replays_history(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    live = page.evaluate("[...urbanmimTwin.features.get('traffic').values()].map(f => f.properties.intensity)")
    slider = page.locator("#time-slider")
    slider.focus()
    for _ in range(40):                                # keyboard: 40 steps of 15 min = 10 hours back
        page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.documentElement.dataset.twinTime === '-40'", timeout=10_000)
    past = page.evaluate("urbanmimTwin.displayed('traffic').map(f => f.properties.v)")
    assert len(past) == len(live) and any(v is not None for v in past)
    assert past != live                                 # the map shows other values ten hours ago
    assert page.locator("#time-live").is_visible()
    assert "10" in (slider.get_attribute("aria-valuetext") or "") or slider.get_attribute("aria-valuetext")
    shot(page, "twin-10h-ago")
    page.locator("#time-live").click()
    page.wait_for_function("document.documentElement.dataset.twinTime === '0'", timeout=10_000)
    assert page.evaluate("urbanmimTwin.displayed('traffic').map(f => f.properties.v)") == live


def test_select_from_list_shows_attributes_and_history(page: Any, twin_server: LiveServer, axe: Any) -> None:
    open_twin(page, twin_server, "valdoria")
    row = page.locator("#list-table tbody tr[data-id='urn:ngsi-ld:AirQualityObserved:valdoria:2']")
    assert "urn:" not in row.locator("td").first.inner_text()          # labelled by its street address
    row.locator("button").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#panel-history .chart", timeout=10_000)
    assert page.locator("#panel-attrs tbody tr").count() > 3
    assert page.locator("#panel-history svg[role=img]").get_attribute("aria-label")
    page.locator("#panel-history details summary").click()       # the chart's data as a table
    assert page.locator("#panel-history details tbody tr").count() > 3
    shot(page, "twin-panel")
    axe(page)


def test_click_on_the_map_selects_a_feature(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    for layer in ("buildings", "districts", "transit", "stops", "poi", "noise", "traffic", "weather", "parking",
                  "ev", "bikes"):
        page.locator(f"#layer-{layer}").uncheck()
    page.wait_for_timeout(300)
    xy = page.evaluate("""(() => { const m = urbanmimTwin.map, r = m.getCanvas().getBoundingClientRect();
        for (const f of urbanmimTwin.features.get('air').values()) {       // a sensor well inside the view
            const p = m.project(f.geometry.coordinates);
            const inside = p.x > 60 && p.y > 60 && p.x < r.width - 60 && p.y < r.height - 60;
            if (inside) return [r.left + p.x, r.top + p.y, f.id];
        }
        return null; })()""")
    assert xy, "no air sensor in view"
    page.mouse.click(xy[0], xy[1])
    page.wait_for_function(f"urbanmimTwin.selected && urbanmimTwin.selected.id === '{xy[2]}'", timeout=5_000)
    page.wait_for_selector("#panel-name", timeout=5_000)


def test_search_by_name(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    page.locator("#search").fill("Museum")
    page.wait_for_selector("#search-results button", timeout=5_000)
    assert "result" in page.locator("#search-status").inner_text()
    label = page.locator("#search-results button").first.inner_text()
    page.locator("#search-results button").first.click()
    page.wait_for_selector("#panel-name", timeout=5_000)
    assert page.locator("#panel-name").inner_text() in label
    page.locator("#search").fill("zzzz-no-such-name")
    page.wait_for_function("document.querySelector('#search-status').textContent.includes('No feature')")


def test_language_switch(page: Any, twin_server: LiveServer) -> None:
    open_twin(page, twin_server, "valdoria")
    page.locator(".lang-switch a[hreflang=de]").click()
    page.wait_for_function("document.documentElement.dataset.twinLoaded === 'valdoria'", timeout=30_000)
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.locator("h1").inner_text() == "Urbaner digitaler Zwilling"
    assert page.locator("label[for=layer-buildings]").inner_text().strip() == "Gebäude (Höhe)"
    assert "Objekte" in page.locator("#list-count").inner_text()     # text written by the script, in German
    page.goto(f"{twin_server.base}/twin/?tenant=valdoria")           # the choice is remembered (cookie)
    assert page.locator("html").get_attribute("lang") == "de"
    page.locator(".lang-switch a[hreflang=fr]").click()
    page.wait_for_function("document.documentElement.dataset.twinLoaded === 'valdoria'", timeout=30_000)
    assert page.locator("h1").inner_text() == "Jumeau numérique urbain"
    assert "éléments" in page.locator("#list-count").inner_text()
    shot(page, "twin-fr")


@pytest.mark.parametrize("lang", ["en", "fr", "de", "es"])
def test_no_serious_accessibility_violation(page: Any, twin_server: LiveServer, axe: Any, lang: str) -> None:
    open_twin(page, twin_server, "valdoria", lang)
    # the skip link is the first thing the keyboard reaches, and it moves focus to the main content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    axe(page)
    page.locator("#analysis summary").click()          # and with the analysis panel open
    page.wait_for_selector("#analysis-form:not([hidden]), #analysis-unavailable:not([hidden])")
    axe(page)


def test_scenario_shows_before_after_difference(page: Any, twin_server: LiveServer) -> None:
    if httpx.get(f"{twin_server.base}/analysis/v1/models", timeout=5).status_code != 200:
        pytest.skip("blocked: the analysis API (/analysis/v1) is not available")
    open_twin(page, twin_server, "valdoria")
    page.locator("#analysis summary").click()
    page.wait_for_selector("#analysis-form:not([hidden])", timeout=10_000)
    page.select_option("#analysis-model", "interpolation")
    page.locator("#analysis-run").click()
    page.wait_for_selector("#analysis-result dl", timeout=30_000)
    assert page.evaluate("urbanmimTwin.analysisShown") > 0
    page.wait_for_timeout(300)
    assert rendered(page, "analysis-fill") > 0                           # the heat layer is drawn
    assert page.locator("#analysis-legend").is_visible()
    page.locator("[data-edit=lowEmissionZone]").click()                  # over the whole visible city
    assert "1" in page.locator("#scenario-edits").inner_text()
    page.locator("#scenario-compare").click()
    page.wait_for_selector("#compare-maps svg", timeout=60_000)
    assert page.locator("#compare-maps figure").count() == 2             # before and after, side by side
    rows = page.locator("#compare-table tbody tr")
    assert rows.count() > 0                                              # some cells changed
    delta = rows.first.locator("td").nth(2).inner_text()
    assert delta.startswith(("-", "−", "+"))
    page.locator("#scenario-result").scroll_into_view_if_needed()
    shot(page, "twin-scenario-compare")
