"""The web demo in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium
uploads images, types texts and presses the buttons; what the page shows is compared with `VQAScore` answering
directly. Skips, naming what is missing, without selenium or the browser (CI installs them: scripts/install_browser.sh).

Set DEMO_SCREENSHOT to a path (docs/images/demo.png for the README) to keep the Score tab's screenshot there.
"""

import importlib.util
import math
import os
import shutil

import pytest
from PIL import Image

from tests.support.demo_server import write_bad_image
from transformers_clipflant5.testing.synthetic import render


pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")
from transformers_clipflant5.demo.views import WORD_COLOURS  # noqa: E402


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1250",
]
# A hang guard only: the tiny model answers in seconds, the slowest CI host within a minute or two.
WAIT_SECONDS = 300


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: pip install selenium (in the dev extra)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"chromium is not installed ({CHROMIUM}): apt-get install chromium (scripts/install_browser.sh)"
    if not os.access(CHROMEDRIVER, os.X_OK):
        return f"chromium-driver is not installed ({CHROMEDRIVER}): apt-get install chromium-driver"
    return None


if _missing() is not None:
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Coloured-shape images (as the training demo's data), named for what they show."""
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for color, shape, position in [
        ("red", "circle", "left"),
        ("blue", "square", "right"),
        ("green", "triangle", "top"),
        ("yellow", "cross", "bottom"),
    ]:
        path = folder / f"{color}-{shape}-{position}.png"
        render(color, shape, position, size=128).save(path)
        paths.append(path)
    return paths


def wait(driver, condition):
    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


def find(driver, selector):
    return wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector))


def open_tab(driver, name):
    tabs = "button[role=tab]"
    tab = wait(driver, lambda d: next((t for t in d.find_elements(By.CSS_SELECTOR, tabs) if t.text == name), None))
    tab.click()


def idle(driver) -> bool:
    """No event is running: Gradio shows a progress text on every output while one does."""
    return not driver.find_elements(By.CSS_SELECTOR, ".progress-text")


def upload_and_score(driver, url, image_path, text):
    driver.get(url)
    find(driver, "#score-image input[type=file]").send_keys(str(image_path))
    find(driver, "#score-image img")  # the upload is done once the preview shows
    find(driver, "#score-text textarea").send_keys(text)
    find(driver, "#score-button").click()


def test_score_tab_shows_the_scorers_score_words_and_heatmap(browser, demo_url, scorer, scenes, tmp_path):
    text = "a red circle on the left"
    upload_and_score(browser, demo_url, scenes[0], text)
    value = find(browser, "#score-value input")
    wait(browser, lambda d: idle(d) and value.get_attribute("value") not in ("", "0"))
    shown = float(value.get_attribute("value"))
    expected = float(scorer(Image.open(scenes[0]), text))
    # The page shows the score's full repr: agreement to float32 precision.
    assert math.isclose(shown, expected, rel_tol=1e-6)
    # The label, the legend (one line per class), then one line per word.
    label, *lines = find(browser, "#score-words").text.split("\n")
    words = [line for line in lines if line not in WORD_COLOURS]
    assert label.startswith("Words") and " ".join(words).split() == text.split()
    # The heatmap: the image and its two masks ("raises"/"lowers" the score) drawn over it.
    overlay = find(browser, "#score-heatmap-image")
    assert len(overlay.find_elements(By.CSS_SELECTOR, "img")) >= 2
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "demo.png"
    browser.save_screenshot(str(screenshot))
    # Palette PNG: a few hundred kB smaller, the same to look at.
    Image.open(screenshot).convert("RGB").quantize(colors=128).save(screenshot, optimize=True)
    assert Image.open(screenshot).size[0] >= 1000
    if os.environ.get("DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["DEMO_SCREENSHOT"])


def test_rank_tab_orders_as_rank(browser, demo_url, scorer, scenes):
    browser.get(demo_url)
    open_tab(browser, "Rank")
    find(browser, "#rank-images input[type=file]").send_keys("\n".join(str(path) for path in scenes))
    # The file list shows each name (stem and suffix apart) once its upload is done.
    wait(browser, lambda d: all(path.stem in find(d, "#rank-images").text for path in scenes))
    find(browser, "#rank-prompt textarea").send_keys("a blue square on the right")
    find(browser, "#rank-button").click()
    table = find(browser, "#rank-table")
    wait(browser, lambda d: idle(d) and all(path.name in table.text for path in scenes))
    text = table.text
    shown_order = sorted(range(len(scenes)), key=lambda index: text.index(scenes[index].name))
    expected = scorer.rank([Image.open(path) for path in scenes], "a blue square on the right")
    assert shown_order == expected.order.tolist()
    assert len(set(expected.scores.tolist())) == len(scenes)  # no tie: the order says something
    assert len(find(browser, "#rank-gallery").find_elements(By.CSS_SELECTOR, "img")) >= len(scenes)


def test_bad_upload_shows_the_message(browser, demo_url, tmp_path):
    upload_and_score(browser, demo_url, write_bad_image(tmp_path), "a red circle")
    message = "not-an-image.png is not an image this demo can read"
    toast = wait(
        browser,
        lambda d: next(
            (t for t in d.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]") if message in t.text), None
        ),
    )
    assert "Traceback" not in toast.text and "Upload a PNG, JPEG or WebP image" in toast.text
