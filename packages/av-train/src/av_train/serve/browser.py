"""Drive the page in a real headless Chromium: load it, upload a clip, press Recognise, read the word.

The browser test uses it, and it makes the README's screenshot of a running server::

    uv run av-cli serve demo_out/weights/checkpoint/demo_audio demo_out/models/demo_av &
    uv run python -m av_train.serve.browser_command http://127.0.0.1:7860 demo_out/recordings/M12_B2_D3.mp4 docs/img/serve.png

Needs Selenium (the workspace's dev dependencies) and Debian's ``chromium`` + ``chromium-driver``
(``apt-get install chromium chromium-driver``; ``.ci/run`` installs them). Selenium is told where both are
and to stay offline, so it downloads no driver. Every request the page makes is recorded (Chrome's
performance log): ``external`` lists those that left the server, which must be none.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1400, 1250)


class BrowserError(RuntimeError):
    """Chromium or its driver is missing, or the page did not behave."""


@dataclass
class PageRun:
    word: str
    message: str
    external: list[str] = field(default_factory=list)  # URLs the page requested from anywhere but the server
    screenshot: Path | None = None


def browser_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).exists()


def _driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserError("selenium is not installed: uv sync (it is a dev dependency of the workspace)") from None
    if not browser_available():
        raise BrowserError(f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download a browser or a driver
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-default-apps", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _external_requests(driver, url: str) -> list[str]:
    server = urlparse(url).netloc
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") != "Network.requestWillBeSent":
            continue
        u = msg["params"]["request"]["url"]
        p = urlparse(u)
        if p.scheme in ("data", "blob", "about", "chrome", "chrome-extension", "devtools"):
            continue
        if p.netloc != server:
            out.append(u)
    return out


def recognise_in_page(url: str, clip: str | Path, screenshot: str | Path | None = None,
                      timeout: float = 180.0) -> PageRun:
    """Open ``url``, upload ``clip`` into the video box, press Recognise and wait for the word or a message."""
    driver = _driver()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:  # _driver() has already said how to install it
        driver.quit()
        raise
    try:
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#video input[type=file]")))
        upload.send_keys(str(Path(clip).resolve()))
        # the upload has arrived when the box shows the video player
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#video video")))
        time.sleep(0.5)
        driver.find_element(By.CSS_SELECTOR, "#recognise").click()

        def answered(d):
            """(word, message) once the request is done: a word or an error box, and no progress shown."""
            if d.find_elements(By.CSS_SELECTOR, ".eta-bar, .progress-text"):
                return False
            word = d.find_element(By.CSS_SELECTOR, "#word textarea, #word input").get_attribute("value")
            boxes = d.find_elements(By.CSS_SELECTOR, "#message .error-box")
            msg = boxes[0].text.strip() if boxes else ""
            return (word, msg) if (word or msg) else False

        word, message = wait.until(answered)
        if not message:  # the pictures come with the word; let them be drawn before the screenshot
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#mouths img")
                                            or not d.find_element(By.CSS_SELECTOR, "#mouths").is_displayed())
            time.sleep(1.0)
        shot = None
        if screenshot is not None:
            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            driver.execute_script("window.scrollTo(0, 0)")
            if not driver.save_screenshot(str(shot)):
                raise BrowserError(f"{shot}: Chromium did not write the screenshot")
        return PageRun(word, message, _external_requests(driver, url), shot)
    finally:
        driver.quit()
