"""The viewer in a real headless browser (Debian's chromium, selenium): a finished generate
run and a finished compare run made on fake backends, and a run still being written.
Screenshots go to tests/artifacts/ (gitignored)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from tests.viewer.browser import browser_or_skip, serving, shot  # noqa: E402


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    d = browser_or_skip()
    d.implicitly_wait(5)
    try:
        yield d
    finally:
        d.quit()


def _click(driver: Any, css: str) -> None:
    """Click something that loads a new page, and wait until it has."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(*_by("html"))
    driver.find_element(*_by(css)).click()
    WebDriverWait(driver, 10).until(ec.staleness_of(old))


def _by(css: str) -> Any:
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def test_generate_run_filter_open_lineage_and_review(driver: Any, gen_run: Path) -> None:
    from selenium.webdriver.support.ui import Select

    with serving(gen_run) as url:
        driver.get(url + "/")
        assert driver.title.startswith("generate run")
        assert len(driver.find_elements(*_by("tr.row"))) == 9
        for img in driver.find_elements(*_by(".charts img")):  # every chart loaded
            assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
        shot(driver, "generate-index")
        # the markup in an instruction is text, and never ran
        assert driver.execute_script("return window.__xss") is None
        assert "<script>window.__xss=1</script>" in driver.find_element(*_by("#rows")).text

        Select(driver.find_element(*_by("select[name=status]"))).select_by_visible_text("rejected")
        _click(driver, "#apply")
        rows = driver.find_elements(*_by("tr.row"))
        assert len(rows) == 3 and all("rejected" in r.text for r in rows)
        driver.find_element(*_by("#q")).send_keys("python")  # a skill of one metadata entry
        _click(driver, "#apply")
        rows = driver.find_elements(*_by("tr.row"))
        assert len(rows) == 1 and "rejected" in rows[0].text and "code debugging" in rows[0].text

        driver.get(url + "/?q=xss")
        _click(driver, "tr.row td.text a")
        lineage = driver.find_element(*_by("#lineage")).text
        assert "Write a limerick about a cat." in driver.find_element(*_by("#seeds")).text
        assert "creative writing" in driver.find_element(*_by("#metadata")).text
        scores = [e.text for e in driver.find_elements(*_by(".iteration td.score"))]
        iterations = driver.find_elements(*_by(".iteration"))
        assert iterations and len(scores) == 4 * len(iterations)  # four judge scores each
        assert all(s for s in scores)
        assert "Assistant 1 was shown first." in lineage  # the judge's own text
        assert driver.execute_script("return window.__xss") is None
        shot(driver, "generate-row")

        driver.find_element(*_by("input[name=note]")).send_keys("not hard enough")
        _click(driver, "#mark-rejected")
        assert driver.find_element(*_by("#saved")).is_displayed()
        assert driver.find_element(*_by("#row-status")).text == "rejected"
        review = [json.loads(x) for x in (gen_run / "review.jsonl").read_text().splitlines()]
        assert review[-1]["status"] == "rejected" and review[-1]["note"] == "not hard enough"
        driver.get(url + "/?status=rejected")
        assert len(driver.find_elements(*_by("tr.row"))) == 4


def test_compare_run_row_shows_both_orders(driver: Any, cmp_run: Path) -> None:
    with serving(cmp_run) as url:
        driver.get(url + "/?use_case=coding")
        assert len(driver.find_elements(*_by("tr.row"))) == 3
        _click(driver, "tr.row td.text a")
        orders = driver.find_element(*_by("#orders")).text
        assert "A shown first" in orders and "B shown first" in orders
        assert "AlpaGasus rule: win" in orders and "CodecLM rule: win" in orders
        assert "The GOOD answer is more helpful." in orders
        shot(driver, "compare-row")


def test_live_run_refreshes(driver: Any, tmp_path: Path) -> None:
    """A run whose writer holds RUN/.lock and keeps committing: the page says live, reloads
    itself, and shows the new rows."""
    from synthcodec.store import RunDir

    rd = RunDir(tmp_path / "live").open({"stage": "rate", "models": {"judge": "fake:x"}})
    try:
        journal = rd.journal("rate")

        def add(i: int) -> None:
            journal.record(f"id{i}", i, "ok", [{"instruction": f"task {i}", "score": 4.0,
                                                "_synthcodec": {"id": f"id{i}", "index": i}}])
        add(0)
        with serving(tmp_path / "live") as url:
            driver.get(url + "/")
            assert driver.find_element(*_by("header .badge")).text == "live"
            assert driver.find_elements(*_by("meta[http-equiv=refresh]"))
            assert len(driver.find_elements(*_by("tr.row"))) == 1
            add(1)
            add(2)
            time.sleep(2.1)  # the index rebuilds at most every 2 s
            driver.get(url + "/")
            assert len(driver.find_elements(*_by("tr.row"))) == 3
            shot(driver, "live-index")
    finally:
        rd.close()
