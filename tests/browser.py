"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (the same version as the
browser, both from debian-packages.txt; nothing is downloaded)."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator["object"]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="weblab-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver, condition: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    """Poll condition (a function of nothing) until it is truthy; its value, or AssertionError naming what."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as e:  # the page is redrawn under us: try again
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def full_screenshot(driver, path: Path) -> Path:
    """A screenshot of the whole page (the window resized to the page's height for it)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return Math.max(document.documentElement.scrollWidth, 1200)")
    driver.set_window_size(width, min(int(height) + 40, 6000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
