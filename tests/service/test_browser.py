"""The web page in a real headless Chromium, against gunicorn serving a really trained model.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``),
which ./test.sh installs. Without them the browser tests fail, so neither ./test.sh nor CI can lose
them silently; a developer without them may skip them with ``SENTIMENT_ALLOW_SKIP=1`` (tests/tooling.py).
Every test that drives the browser is marked ``browser`` (and ``slow``: it trains the small model).
Screenshots are written to ``test-artifacts/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from inference.predictor import Predictor
from registry.store import Registry
from tests.fakes import add_fake_report, make_random_version
from tests.service.gunicorn_server import PROJECT_ROOT, GunicornServer
from tests.tooling import ALLOW_SKIP, missing_tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
]
WAIT_S = 20

# Emphatic reviews the `small` preset classifies right by a wide margin (checked first, below).
POSITIVE = (
    "An excellent film with a beautiful, moving story. The lead plays a young father and gives a "
    "wonderful performance, and the supporting cast is great. Directed with real care, it is one of "
    "the best films of recent years. A masterpiece, I loved it!"
)
NEGATIVE = (
    "Terrible, boring and stupid. There is no story, nothing happens and the acting is awful. Why "
    "would anyone make this? I can't recommend it to anyone; it doesn't even try. A complete waste "
    "of time, avoid it!"
)
#: How far from 0.5 the trained model must score both reviews for the page checks to be meaningful.
MARGIN = 0.25


def require_browser() -> None:
    """Fail with the install command without Chromium and its driver (skip only if explicitly allowed)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        missing_tool(f"the browser tests need {' and '.join(missing)}; install them with `{INSTALL}`")


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest) -> Registry:
    """Return the really trained registry, after checking for the browser (training takes a while)."""
    require_browser()
    return request.getfixturevalue("trained_registry")


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """Serve the trained model with one gunicorn worker."""
    server = GunicornServer(registry.root, tmp_path_factory.mktemp("browser-gunicorn"), workers=1, threads=4)
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(server: GunicornServer, tmp_path_factory: pytest.TempPathFactory):
    """Start headless Chromium through chromedriver (no download: both come from Debian)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(server.workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message)


def analyse(driver, server: GunicornServer, review: str) -> None:
    """Open the page, type the review, click Analyse and wait for the result to show it."""
    from selenium.webdriver.common.by import By

    driver.get(server.url("/"))
    wait(driver, lambda d: " v" in d.find_element(By.ID, "model-version").text, "the version never showed")
    box = driver.find_element(By.ID, "review")
    box.clear()
    box.send_keys(review)
    driver.find_element(By.ID, "analyse").click()
    wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "result").is_displayed()
            and d.find_element(By.ID, "analyse").is_enabled()
            and d.find_elements(By.CSS_SELECTOR, "#tokens .token")
        ),
        "no result appeared",
    )


def shaded_tokens(driver) -> list[tuple[str, str, str]]:
    """Return (text, background colour, tooltip) of the words with a non-transparent background."""
    from selenium.webdriver.common.by import By

    shaded = []
    for token in driver.find_elements(By.CSS_SELECTOR, "#tokens .token"):
        background = token.value_of_css_property("background-color")
        if background not in ("transparent", "rgba(0, 0, 0, 0)"):
            shaded.append((token.text, background, token.get_attribute("title")))
    return shaded


def test_missing_browser_fails_unless_skipping_is_explicitly_allowed_outside_ci(monkeypatch):
    monkeypatch.setattr(f"{__name__}.CHROMIUM", Path("/nonexistent/chromium"))
    for ci, allow in [(None, None), (None, "0"), ("true", None), ("true", "1"), ("1", "1")]:
        for name, value in (("CI", ci), (ALLOW_SKIP, allow)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        with pytest.raises(pytest.fail.Exception, match=re.escape(INSTALL)):
            require_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=re.escape(INSTALL)):
        require_browser()  # SENTIMENT_ALLOW_SKIP=1 on a developer's machine


def test_the_test_command_never_skips_for_a_missing_tool():
    """./test.sh (and so CI, which runs it) clears SENTIMENT_ALLOW_SKIP before running pytest."""
    lines = (PROJECT_ROOT / "test.sh").read_text().splitlines()
    unset = next(i for i, line in enumerate(lines) if line.strip().startswith(f"unset {ALLOW_SKIP}"))
    assert unset < next(
        i for i, line in enumerate(lines) if "pytest" in line and line.strip().startswith("exec")
    )


def severe_console_messages(driver) -> list[str]:
    """Return the browser's error messages (a CSP violation or a failed load shows up here)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.browser
@pytest.mark.slow
def test_the_trained_model_separates_the_two_reviews(registry: Registry):
    version = registry.production_version("sentiment")
    predictor = Predictor.load(registry.version_dir("sentiment", version))
    positive, negative = predictor.score_texts([POSITIVE, NEGATIVE])
    assert positive >= 0.5 + MARGIN and negative <= 0.5 - MARGIN, (
        f"the small trained model scores the positive review {positive:.3f} and the negative one "
        f"{negative:.3f}: too close to 0.5 for the browser checks to be reliable"
    )


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(
    "review, label, colour",
    [(POSITIVE, "Positive", "green"), (NEGATIVE, "Negative", "red")],
    ids=["positive", "negative"],
)
def test_review_gets_its_label_and_shaded_words(browser, server: GunicornServer, review, label, colour):
    from selenium.webdriver.common.by import By

    analyse(browser, server, review)
    browser.save_screenshot(str(ARTIFACTS / f"browser-{label.lower()}.png"))
    assert browser.find_element(By.ID, "label").text == label

    api = requests.post(server.url("/v1/explain"), json={"text": review}, timeout=10).json()
    shown = browser.find_element(By.ID, "probability").text
    assert shown.startswith(f"{100 * api['probability']:.1f}%"), shown
    width = browser.execute_script("return arguments[0].style.width", browser.find_element(By.ID, "bar-fill"))
    assert float(width.rstrip("%")) == pytest.approx(100 * api["probability"], abs=0.051), width

    words = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#tokens .token")]
    assert words == [t["token"] for t in api["tokens"]]
    shaded = shaded_tokens(browser)
    assert len(shaded) >= 3, f"only {len(shaded)} shaded words: {shaded}"
    # The words that pushed hardest towards the label are shaded in its colour.
    sign = 1 if label == "Positive" else -1
    strongest = max(api["tokens"], key=lambda t: sign * t["contribution"])
    element = browser.find_elements(By.CSS_SELECTOR, "#tokens .token")[api["tokens"].index(strongest)]
    red, green = (
        int(c) for c in element.value_of_css_property("background-color").split("(")[1].split(",")[:2]
    )
    assert (green > red) if colour == "green" else (red > green), (strongest, red, green)
    assert "without this word" in element.get_attribute("title")
    assert f"{abs(strongest['contribution']):.4f}" in element.get_attribute("title")
    assert severe_console_messages(browser) == []


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_the_version_and_links_to_its_report(browser, server: GunicornServer, registry: Registry):
    from selenium.webdriver.common.by import By

    version = registry.production_version("sentiment")
    browser.get(server.url("/"))
    link = wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "report-link").is_displayed() and d.find_element(By.ID, "report-link")
        ),
        "the report link never showed",
    )
    assert browser.find_element(By.ID, "model-version").text == f"sentiment · v{version}"
    assert link.get_attribute("href") == server.url("/v1/models/sentiment/report")
    link.click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#report h1"), "the report page did not load")
    assert "validation report" in browser.find_element(By.CSS_SELECTOR, "#report h1").text
    assert browser.find_elements(By.CSS_SELECTOR, "#report table")
    images = browser.find_elements(By.CSS_SELECTOR, "#report img")
    assert len(images) >= 2
    wait(
        browser,
        lambda d: all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images
        ),
        "a report image did not load",
    )
    browser.save_screenshot(str(ARTIFACTS / "browser-report.png"))
    assert severe_console_messages(browser) == []


@pytest.mark.browser
@pytest.mark.slow
def test_review_with_markup_is_shown_as_text_and_runs_nothing(browser, server: GunicornServer):
    from selenium.webdriver.common.by import By

    review = (
        "<script>window.__xss = 1</script> An excellent film, I loved it! "
        '<img src=x onerror="window.__xss = 2"> "><b>bold</b> &amp;'
    )
    analyse(browser, server, review)
    assert browser.execute_script("return window.__xss === undefined")
    tokens = browser.find_element(By.ID, "tokens")
    assert tokens.find_elements(By.CSS_SELECTOR, "script, img, b") == []
    words = [t.text for t in tokens.find_elements(By.CSS_SELECTOR, ".token")]
    assert words == ["window", "xss", "1", "an", "excellent", "film", "i", "loved", "it", "!", "bold", "amp"]
    # The review itself stays in the box as the user typed it, as text.
    assert browser.find_element(By.ID, "review").get_attribute("value") == review
    browser.save_screenshot(str(ARTIFACTS / "browser-markup.png"))


@pytest.mark.browser
@pytest.mark.slow
def test_empty_review_is_refused_on_the_page(browser, server: GunicornServer):
    from selenium.webdriver.common.by import By

    browser.get(server.url("/"))
    browser.find_element(By.ID, "analyse").click()
    error = wait(
        browser,
        lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"),
        "no error shown",
    )
    assert error.text == "Type a review first."
    assert not browser.find_element(By.ID, "result").is_displayed()


@pytest.mark.browser
@pytest.mark.slow
def test_quick_model_badge_changes_by_itself_when_the_full_model_replaces_it(browser, tmp_path):
    from selenium.webdriver.common.by import By

    registry = Registry(tmp_path / "models")
    make_random_version(registry, extra_manifest={"quick": True, "preset": "quick"})
    add_fake_report(registry, version=1)
    quick = GunicornServer(registry.root, tmp_path / "gunicorn", workers=1, threads=4).start(timeout=60)
    try:
        browser.get(quick.url("/"))
        badge = wait(
            browser,
            lambda d: "quick" in d.find_element(By.ID, "model-version").text
            and d.find_element(By.ID, "model-version"),
            "the quick badge never showed",
        )
        assert badge.text == "sentiment · v1 · quick model"
        assert "badge-quick" in badge.get_attribute("class").split()
        assert "replaces it automatically" in badge.get_attribute("title")
        browser.save_screenshot(str(ARTIFACTS / "browser-quick-badge.png"))
        make_random_version(registry, seed=1, extra_manifest={"quick": False, "preset": "full"})  # promoted
        add_fake_report(registry, version=2)
        # The page looks again every 10 s while a quick model serves; no reload, no click.
        wait(
            browser,
            lambda d: d.find_element(By.ID, "model-version").text == "sentiment · v2",
            "the badge did not switch to the full model",
        )
        assert "badge-quick" not in badge.get_attribute("class").split()
        assert browser.find_element(By.ID, "report-link").text == "Evaluation report (v2)"
        assert severe_console_messages(browser) == []
    finally:
        quick.stop()
