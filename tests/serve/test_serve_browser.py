"""The workbench page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against a
live server: tokens stream in, hovering shows probability bars, the explorer's highlighted row carries the API's
numbers, and the training slider changes the map. Screenshots land in the test's tmp_path.
Without a browser the tests skip with an install hint; with CI=true a missing browser fails them."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        message = "no chromium / chromedriver: apt-get install -y chromium chromium-driver (make setup does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


@pytest.fixture(scope="module")
def page(browser, live_server):
    url, _ = live_server
    browser.get(url + "/")
    _wait(lambda: browser.execute_script("return document.body.dataset.ready === 'true'"))
    return browser


def _hover(driver, element):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()


def _show(driver, view):
    driver.find_element("css selector", f"nav [data-view={view}]").click()


def test_prompt_streams_tokens_and_hover_shows_bars(page, tmp_path):
    prompt = page.find_element("id", "prompt")
    prompt.clear()
    prompt.send_keys("JULIET:")
    page.find_element("id", "max-new-tokens").clear()
    page.find_element("id", "max-new-tokens").send_keys("40")
    page.execute_script("""window.batches = [];  // one entry per DOM update that added tokens
        new MutationObserver((ms) => window.batches.push(ms.length)).observe(
            document.getElementById('output'), {childList: true});""")
    page.find_element("id", "generate").click()
    _wait(lambda: "tokens in" in page.find_element("id", "gen-status").text)
    assert len(page.execute_script("return window.batches")) > 3  # tokens arrived in many updates, not one block
    assert page.find_element("css selector", "#output .prompt").text == "JULIET:"
    _hover(page, page.find_elements("css selector", "#output .tok")[2])
    bars = _wait(lambda: page.find_elements("css selector", "#probs svg:first-of-type .bar"))
    probs = [float(b.get_attribute("data-p")) for b in bars]
    assert len(probs) in (10, 11) and probs[:10] == sorted(probs[:10], reverse=True) and 0 < sum(probs[:10]) <= 1.0001
    assert len(page.find_elements("css selector", "#probs svg:first-of-type .bar.chosen")) == 1
    page.save_screenshot(str(tmp_path / "generate.png"))


def test_stop_button_ends_the_generation_on_the_server(page, live_server, monkeypatch):
    from scratchllm.serve.engine import Generation

    step = Generation.step

    def slow_step(self):  # 1,024 tokens of the tiny model can all arrive before a click on a fast machine
        time.sleep(0.01)
        return step(self)

    monkeypatch.setattr(Generation, "step", slow_step)
    _, app = live_server
    tokens = page.find_element("id", "max-new-tokens")
    tokens.clear()
    tokens.send_keys("1024")
    page.find_element("id", "generate").click()
    _wait(lambda: len(page.find_elements("css selector", "#output .tok")) > 5)
    page.find_element("id", "stop").click()
    _wait(lambda: page.find_element("id", "gen-status").text == "stopped")
    _wait(lambda: not app.state.lock.locked(), timeout=3)  # released at once, not when the garbage collector runs
    made = app.state.engine.tokens_generated
    time.sleep(0.3)
    assert app.state.engine.tokens_generated == made


def test_explorer_row_matches_the_api(page, live_server, tmp_path):
    url, _ = live_server
    _show(page, "attention")
    box = page.find_element("id", "att-text")
    box.clear()
    box.send_keys("Good night, good night!")
    text = "Good night, good night!"
    req = urllib.request.Request(url + "/api/attention", data=json.dumps({"text": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    api = json.loads(urllib.request.urlopen(req).read())
    chips = _wait(lambda: [c for c in page.find_elements("css selector", "#att-tokens .chip")]
                  if len(page.find_elements("css selector", "#att-tokens .chip")) == len(api["tokens"]) else None)
    i = len(chips) // 2
    _hover(page, chips[i])
    rows = _wait(lambda: page.find_elements("css selector", "#att-row .weight"))
    shown = {int(r.get_attribute("data-k")): float(r.get_attribute("data-weight")) for r in rows}
    want = api["attention"][0][0][i]
    assert sorted(shown) == list(range(i + 1))  # the causal row: tokens 0..i
    assert all(abs(shown[k] - want[k]) < 1e-6 for k in shown)
    assert len(page.find_elements("css selector", "#att-pipeline canvas")) == 7
    page.find_elements("css selector", "#att-grid canvas")[-1].click()  # the last layer's last head
    _wait(lambda: page.find_element("id", "att-title").text.startswith("layer 1, head 1"))
    page.save_screenshot(str(tmp_path / "attention.png"))


def test_training_slider_changes_the_map(page, tmp_path):
    _show(page, "training")
    slider = _wait(lambda: page.find_element("id", "step-slider"))
    _wait(lambda: page.find_elements("css selector", "#replay-grid canvas"))
    picture = "return document.querySelector('#replay-grid canvas').toDataURL()"
    last = page.execute_script(picture)
    assert "step 30" in page.find_element("id", "step-label").text
    page.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
    _wait(lambda: "step 0 " in page.find_element("id", "step-label").text)
    assert page.execute_script(picture) != last
    assert page.find_elements("css selector", "#curve path.val")
    page.save_screenshot(str(tmp_path / "training.png"))


def test_tokenizer_playground_counts(page, tmp_path):
    _show(page, "tokenizer")
    rows = _wait(lambda: page.find_elements("css selector", "#tok-rows .row"))
    titles = [r.find_element("css selector", "h3").text for r in rows]
    assert [t.startswith(name) for t, name in zip(titles, ("this run's", "characters", "words", "UTF-8 bytes"),
                                                       strict=True)] == [True] * 4
    n_bytes = len(page.find_element("id", "tok-text").get_attribute("value").encode())
    assert f"{n_bytes} tokens" in titles[3]
    page.save_screenshot(str(tmp_path / "tokenizer.png"))
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
