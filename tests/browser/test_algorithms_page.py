"""The MIM5 algorithm register page in real Chromium: every registered algorithm is on it, in the
chosen language, keyboard-reachable, with no serious or critical WCAG violation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import shot


def test_register_page_lists_every_algorithm_accessibly(page: Any, twin_server: Any, axe: Any) -> None:
    registered = httpx.get(f"{twin_server.base}/algorithms/v1/algorithms", timeout=30).json()
    assert registered, "the platform registers its own algorithms"
    page.goto(f"{twin_server.base}/algorithms/?lang=fr")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("h1").inner_text() == "Registre des algorithmes"
    ids = page.locator("article.algorithm").evaluate_all("els => els.map(e => e.id)")
    assert sorted(ids) == sorted(a["id"] for a in registered)
    # the first Tab lands on the skip link, which moves focus to the main content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    shot(page, "algorithms-register-fr")
    axe(page)
