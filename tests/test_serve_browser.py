"""The demo page in a real headless Chromium (Debian's package, driven by selenium + chromedriver): type a
sentence, click Predict, read the score, send feedback, and keep a screenshot in the test's tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
pytest.importorskip("selenium", reason="selenium is not installed (it comes with the test extra)")

from conftest import serve_process  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
                                reason="Chromium not found (Debian: apt-get install -y chromium chromium-driver); "
                                       "the browser test needs a local browser and never downloads one")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1000,900", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")  # loopback only: offline


def write_wav(path: Path) -> None:
    import numpy as np
    import soundfile

    t = np.arange(16000) / 16000
    soundfile.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_demo_page_types_a_sentence_shows_the_score_and_takes_feedback(media_bundle, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    log = tmp_path / "feedback.sqlite"
    with serve_process(media_bundle, "--feedback", str(log)) as (_, url):
        browser.get(f"{url}/")
        browser.find_element(By.ID, "text").send_keys("what a wonderful film")
        browser.find_element(By.ID, "predict").click()
        wait = WebDriverWait(browser, 30)
        wait.until(ec.visibility_of_element_located((By.ID, "score")))
        score = float(browser.find_element(By.ID, "score").text)
        assert -3 <= score <= 3
        assert browser.find_element(By.ID, "polarity").text in ("positive", "negative", "neutral")
        assert browser.find_element(By.ID, "ran").text == "text"
        skipped = browser.find_element(By.ID, "skipped").text
        assert "audio" in skipped and "missing" in skipped
        assert "total" in browser.find_element(By.ID, "ms").text
        assert browser.find_element(By.ID, "error").text == ""
        label = browser.find_element(By.ID, "label")
        label.clear()
        label.send_keys("2")
        browser.find_element(By.ID, "feedback").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "feedback-status"), "saved"))
        clip = tmp_path / "clip.wav"
        write_wav(clip)
        browser.find_element(By.ID, "clip").send_keys(str(clip))
        browser.find_element(By.ID, "predict").click()
        wait.until(lambda d: "audio" in d.find_element(By.ID, "ran").text
                   or "gate" in d.find_element(By.ID, "skipped").text)  # the clip reached the audio path
        assert "front_end_audio" in browser.find_element(By.ID, "ms").text or "gate" in \
            browser.find_element(By.ID, "skipped").text
        shot = tmp_path / "demo.png"
        assert browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a rendered page, not a blank image
    import sqlite3

    with sqlite3.connect(log) as db:
        assert db.execute("SELECT label, text FROM feedback").fetchall() == [(2.0, "what a wonderful film")]


def test_docs_page_offline_says_where_the_schema_is(media_bundle, browser):
    """/docs draws Swagger UI from a CDN: on a device without internet (a kiosk, a robot) it was a blank page, while
    /openapi.json worked. Offline (this browser reaches loopback only) it says so and links the schema."""
    from selenium.webdriver.common.by import By

    with serve_process(media_bundle) as (_, url):
        browser.get(f"{url}/docs")
        note = browser.find_element(By.ID, "offline")
        assert note.is_displayed() and note.text.startswith("Swagger UI did not load: this page draws it from a CDN")
        link = note.find_element(By.TAG_NAME, "a")
        assert link.get_attribute("href") == f"{url}/openapi.json"
        browser.get(link.get_attribute("href"))
        assert '"openapi"' in browser.find_element(By.TAG_NAME, "body").text
