"""PNG screenshots of the workbench's four views on a run folder, in headless Chromium (as the browser tests drive it).

Run: .venv/bin/python docs/workbench_screenshots.py RUN_DIR OUT_DIR
     -> OUT_DIR/generate.png, attention.png, training.png, tokenizer.png
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

from scratchllm.serve.app import bind, create_app, server


def wait(driver, script: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.1)


def shoot(driver, out: Path) -> None:
    css = driver.find_elements
    wait(driver, "return document.body.dataset.ready === 'true'")
    driver.find_element("id", "generate").click()
    wait(driver, "return document.getElementById('gen-status').textContent.includes('tokens in')")
    ActionChains(driver).move_to_element(css("css selector", "#output .tok")[6]).perform()
    driver.save_screenshot(str(out / "generate.png"))
    driver.find_element("css selector", "nav [data-view=attention]").click()
    wait(driver, "return document.querySelectorAll('#att-pipeline canvas').length === 7")
    chips = css("css selector", "#att-tokens .chip")
    ActionChains(driver).move_to_element(chips[len(chips) * 2 // 3]).perform()
    driver.save_screenshot(str(out / "attention.png"))
    driver.find_element("css selector", "nav [data-view=training]").click()
    wait(driver, "return document.querySelectorAll('#replay-grid canvas').length > 0")
    driver.save_screenshot(str(out / "training.png"))
    driver.find_element("css selector", "nav [data-view=tokenizer]").click()
    wait(driver, "return document.querySelectorAll('#tok-rows .row').length === 4")
    driver.save_screenshot(str(out / "tokenizer.png"))


def main(run_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sock, srv = bind("127.0.0.1", 0), server(create_app(run_dir))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1050"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        shoot(driver, out)
    finally:
        driver.quit()
        srv.should_exit = True
        thread.join(10)
    print(f"wrote {out}/generate.png, attention.png, training.png, tokenizer.png")


if __name__ == "__main__":
    main(*sys.argv[1:3])
