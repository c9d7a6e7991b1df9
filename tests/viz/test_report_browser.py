"""The HTML report in headless Chromium: it loads with no console errors, and the step
control replays a run (the highlighted arrow and the states shown change on "next")."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.viz.report import generate_report
from tests.viz.support import need

SCENARIO = "simultaneous-close"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("dot", "graphviz")
    return generate_report(tmp_path_factory.mktemp("report") / "report.html", progress=False)


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    chromium = need("chromium", "chromium")
    chromedriver = need("chromedriver", "chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    browser.set_page_load_timeout(120)
    try:
        yield browser
    finally:
        browser.quit()


def _save_artifact(path: Path) -> None:
    target = os.environ.get("TCPSTACK_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    for name in SCENARIOS:
        assert f'<section class="scenario" id="{name}"' in page
    assert "<link" not in page and 'src="http' not in page and "@import" not in page
    assert page.count("data:image/png;base64,") == len(SCENARIOS)


def test_step_control_replays_the_run(report: Path, driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(report.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert driver.execute_script("return window.tcpstackPlayers.length") == len(SCENARIOS)
    section = driver.find_element(By.ID, SCENARIO)
    driver.execute_script("arguments[0].scrollIntoView()", section)
    next_button = section.find_element(By.CSS_SELECTOR, "button.next")

    def highlighted() -> list[str]:
        found = section.find_elements(By.CSS_SELECTOR, "g.tl-seg.tl-current")
        return [element.get_attribute("id") for element in found]

    def shown(end: str) -> list[str]:
        items = section.find_elements(By.CSS_SELECTOR, f"ul.states-{end} li")
        return [item.get_attribute("data-state") or item.text for item in items]

    def current_node(end: str) -> list[str]:
        nodes = section.find_elements(By.CSS_SELECTOR, f"figure.diagram.{end} g.node.current")
        return [node.get_attribute("id") for node in nodes]

    assert highlighted() == []
    assert shown("client") == ["SYN_SENT"]
    seen: list[tuple[list[str], list[str], list[str]]] = []
    for _ in range(7):
        before = (highlighted(), shown("client"), shown("server"))
        next_button.click()
        after = (highlighted(), shown("client"), shown("server"))
        assert after[0] != before[0]  # "next" moves the highlight to the next arrow
        seen.append(after)
    assert [h for h, _, _ in seen] == [[f"{SCENARIO}-seg-{n}"] for n in range(1, 8)]
    client_states = [c[0] for _, c, _ in seen]
    assert client_states == [
        "SYN_SENT",
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "FIN_WAIT_1",
        "CLOSING",
        "TIME_WAIT",
    ]
    server_states = [s[-1] for _, _, s in seen]
    assert "CLOSING" in server_states and server_states[-1] == "TIME_WAIT"
    assert current_node("client") == [f"{SCENARIO}-client-node-TIME_WAIT"]
    assert current_node("server") == [f"{SCENARIO}-server-node-TIME_WAIT"]
    step_title = section.find_element(By.CSS_SELECTOR, ".step-title").text
    assert "#7 client" in step_title

    # The keyboard steps too: back one with the left arrow.
    section.find_element(By.TAG_NAME, "h2").click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert highlighted() == [f"{SCENARIO}-seg-6"]
    assert shown("client") == ["CLOSING"]
    for _ in range(3):
        section.find_element(By.CSS_SELECTOR, "button.prev").click()
    assert highlighted() == [f"{SCENARIO}-seg-3"]
    assert shown("client") == ["ESTABLISHED"]
    assert shown("server")[-1] == "ESTABLISHED"

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    driver.execute_script("arguments[0].scrollIntoView()", section)
    screenshot = tmp_path / "report-simultaneous-close.png"
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    _save_artifact(screenshot)
