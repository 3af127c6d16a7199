"""The built book in a real browser: headless Chromium opens every page from disk, offline.

Asserts from the rendered DOM, after the page's scripts ran, that the math was typeset by the
bundled MathJax (no raw TeX, no TeX errors), that every widget shows its default output (the
figure stored with it), that figures load, that each chapter's Colab button has the right
target, that code blocks have copy buttons and interview answers sit in closed dropdowns, that
search works, and that the browser console has no errors. Screenshots of the intro
and of a chapter (its math, and its widget with the figure) are saved in _build/screenshots/.

Chromium and its driver come from Debian's packages; the test installs them with apt-get when
they are missing, and is skipped, saying so, only where apt-get is unavailable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from notebook_utils import ROOT, toc_chapters
from tools.colab import repository
from tools.repository_links import colab_url

SCREENSHOTS = ROOT / "_build" / "screenshots"
SCREENSHOT_CHAPTER = "chapters/05_momentum"
FIGURES_CHAPTER = "chapters/08_choosing_an_optimizer"
PAGE_TIMEOUT = 60  # seconds for one page's scripts (MathJax, widgets) to finish

# Read in the page once its scripts have run: what the reader actually sees.
DOM_REPORT = """
const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
const mathNodes = Array.from(document.querySelectorAll('span.math, div.math'));
return {
  title: document.title,
  math: mathNodes.length,
  untypeset: mathNodes.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
  texErrors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error') || e.textContent),
  widgets: views.length,
  widgetsWithoutView: views.filter(v => !v.parentElement.querySelector('.jupyter-widgets')).length,
  widgetsWithoutFigure: views.filter(v => !Array.from(v.parentElement.querySelectorAll('img'))
                                     .some(i => i.complete && i.naturalWidth > 0)).length,
  brokenImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  figures: Array.from(document.images).filter(i => i.naturalWidth > 0).length,
  colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href),
  codeBlocks: document.querySelectorAll('div.highlight pre').length,
  copyButtons: document.querySelectorAll('button.copybtn').length,
  dropdowns: document.querySelectorAll('details.sd-dropdown').length,
  openDropdowns: document.querySelectorAll('details.sd-dropdown[open]').length,
  // code and printed output that would need a horizontal scroll bar
  scrolling: Array.from(document.querySelectorAll('article pre'))
    .filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => `${p.scrollWidth} > ${p.clientWidth} px: ${p.textContent.split('\\n').sort((a, b) => b.length - a.length)[0].slice(0, 70)}`),
  pageScrolls: document.scrollingElement.scrollWidth > document.scrollingElement.clientWidth + 1,
  // figures the page shrinks (their labels with them)
  shrunkFigures: Array.from(document.querySelectorAll('article img'))
    .filter(i => i.naturalWidth > 0 && i.clientWidth > 0 && i.clientWidth < i.naturalWidth - 1)
    .map(i => `${i.naturalWidth} px shown at ${i.clientWidth} px`),
  searchBoxes: Array.from(document.querySelectorAll('.search-button-field, form.bd-search, .search-button'))
    .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'
                 && !e.closest('dialog:not([open])')).length,
  links: Array.from(document.querySelectorAll('article a[href]')).map(a => a.getAttribute('href')),
};
"""
# What the page's console may log at warning level, and why. Anything else (and every error) fails.
KNOWN_WARNINGS = {
    # @jupyter-widgets/html-manager 1.0.15 compiles its own widget-state schema with Ajv's default
    # strict mode, which logs this about the schema's union types (the schema and its validation
    # work; nothing in the book's pages causes or can change it)
    "strict mode: use allowUnionTypes to allow union type keyword",
}
# Resolves once MathJax has typeset the page and the widget manager has rendered every view.
WAIT_FOR_SCRIPTS = """
const done = arguments[arguments.length - 1];
const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
const widgetsRendered = () => Array.from(views).every(v => v.parentElement.querySelector('.jupyter-widgets img'));
const mathReady = (window.MathJax && MathJax.startup) ? MathJax.startup.promise : Promise.resolve();
mathReady.then(() => {
  const start = Date.now();
  (function poll() {
    if (document.readyState === 'complete' && widgetsRendered()) return done(true);
    if (Date.now() - start > 45000) return done(false);
    setTimeout(poll, 100);
  })();
}, error => done('MathJax failed: ' + error));
"""


def _ensure_chromium() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if shutil.which("apt-get") is None:
        pytest.skip("headless Chromium is not installed and apt-get is unavailable to install it "
                    "(install the Debian packages chromium and chromium-driver to run the browser check)")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        pytest.skip("headless Chromium is not installed, and apt-get needs root (no sudo here)")
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode:  # stale package lists on a fresh machine: refresh once and retry
        subprocess.run([*sudo, "apt-get", "update"], capture_output=True, text=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"apt-get could not install Chromium:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "apt-get installed chromium but chromium/chromedriver are not on PATH"
    return chromium, driver


@pytest.fixture(scope="module")
def html(built_book) -> Path:
    return built_book


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--allow-file-access-from-files", "--window-size=1280,900", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    yield driver
    driver.quit()


def _open(browser, page: Path) -> dict:
    """Load ``page``, wait for MathJax and the widgets, return the DOM report and console errors."""
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(page.as_uri())
    ready = browser.execute_async_script(WAIT_FOR_SCRIPTS)
    report = browser.execute_script(DOM_REPORT)
    report["ready"] = ready
    logs = browser.get_log("browser")
    report["console_errors"] = [e["message"] for e in logs if e["level"] == "SEVERE"]
    report["console_warnings"] = [e["message"] for e in logs if e["level"] == "WARNING"
                                  and not any(known in e["message"] for known in KNOWN_WARNINGS)]
    return report


def _pages(html: Path) -> list[Path]:
    pages = [html / "intro.html", *(html / f"{c}.html" for c in toc_chapters())]
    pages += sorted(p for p in html.glob("*.html") if p.stem not in {"index", "intro", "genindex", "search", "py-modindex"})
    pages += sorted(html.glob("solutions/*.html"))
    return list(dict.fromkeys(pages))


def test_every_page_renders_offline_legibly_with_math_figures_and_no_console_errors(html, browser):
    problems = {}
    for page in _pages(html):
        report = _open(browser, page)
        name = page.relative_to(html).as_posix()
        found = []
        if report["ready"] is not True:
            found.append(f"scripts did not finish: {report['ready']}")
        if report["untypeset"]:
            found.append(f"{len(report['untypeset'])} of {report['math']} math nodes not typeset, e.g. {report['untypeset'][:2]}")
        if report["texErrors"]:
            found.append(f"TeX errors: {report['texErrors'][:3]}")
        if report["brokenImages"]:
            found.append(f"images that did not load: {report['brokenImages'][:3]}")
        if report["console_errors"]:
            found.append(f"console errors: {report['console_errors'][:3]}")
        if report["console_warnings"]:
            found.append(f"console warnings: {report['console_warnings'][:3]}")
        if report["searchBoxes"] != 1:
            found.append(f"{report['searchBoxes']} search boxes are shown instead of one")
        if report["scrolling"]:
            found.append(f"{len(report['scrolling'])} code or output blocks scroll sideways at 1280 px, "
                         f"e.g. {report['scrolling'][:3]}")
        if report["pageScrolls"]:
            found.append("the page itself scrolls sideways at 1280 px")
        if report["shrunkFigures"]:
            found.append(f"figures shrunk to fit the column (their text too): {report['shrunkFigures'][:3]}")
        if found:
            problems[name] = found
    assert not problems, "\n".join(f"{page}: {'; '.join(found)}" for page, found in problems.items())


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_typesets_math_shows_its_widget_default_and_links_to_colab(html, browser, chapter):
    report = _open(browser, html / f"{chapter}.html")
    assert report["ready"] is True, f"MathJax or the widget manager did not finish: {report['ready']}"
    assert report["math"] > 0 and not report["untypeset"], report["untypeset"][:3]
    assert report["figures"] > 0, "no figure was displayed"
    assert report["widgets"] > 0, "the chapter shows no widget"
    assert report["widgetsWithoutView"] == 0, "a widget was not rendered by the widget manager"
    assert report["widgetsWithoutFigure"] == 0, "a widget does not show its default figure"
    assert report["copyButtons"] == report["codeBlocks"] > 0, "every code block gets a copy button"
    assert report["dropdowns"] > 0 and report["openDropdowns"] == 0, "interview answers are hidden behind dropdowns"
    repo = repository()
    launch = colab_url(repo["url"], repo["branch"], f"{chapter}.ipynb")
    stem = chapter.split("/")[-1]
    exercises = colab_url(repo["url"], repo["branch"], f"exercises/{stem}.ipynb")
    assert report["colab"] == [launch, exercises], \
        f"Colab links {report['colab']} instead of the chapter's launch button and its exercise notebook"
    assert f"../solutions/{stem}.html" in report["links"], "the chapter does not link its solutions page"


def test_search_finds_a_chapter(html, browser):
    browser.get((html / "search.html").as_uri() + "?q=momentum")
    results = browser.execute_async_script("""
const done = arguments[arguments.length - 1]; const start = Date.now();
(function poll() {
  // Sphinx appends the results one by one; read them once it says the search has finished.
  const status = document.querySelector('#search-results .search-summary');
  const finished = status && status.innerText.trim().length > 0;
  const links = Array.from(document.querySelectorAll('#search-results a')).map(a => a.getAttribute('href'));
  if (finished || Date.now() - start > 30000) return done(links);
  setTimeout(poll, 100);
})();""")
    assert any("05_momentum" in link for link in results), f"searching 'momentum' found {results[:5]}"


def test_screenshots_of_the_intro_and_a_chapter(html, browser):
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    _open(browser, html / "intro.html")
    browser.save_screenshot(str(SCREENSHOTS / "intro.png"))

    report = _open(browser, html / f"{SCREENSHOT_CHAPTER}.html")
    assert report["ready"] is True
    name = SCREENSHOT_CHAPTER.split("/")[-1]
    # the first section with display math, then the widget with its figure
    display = browser.find_elements(By.CSS_SELECTOR, "div.math mjx-container")
    assert display, "no display math to photograph"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", display[0])
    browser.save_screenshot(str(SCREENSHOTS / f"{name}-math.png"))
    widget = browser.find_element(By.CSS_SELECTOR, ".jupyter-widgets")
    cell = widget.find_element(By.XPATH, "./ancestor::div[contains(@class, 'cell')][1]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -80)", cell)  # below the header
    browser.save_screenshot(str(SCREENSHOTS / f"{name}-widget.png"))
    for shot in ("intro.png", f"{name}-math.png", f"{name}-widget.png"):
        assert (SCREENSHOTS / shot).stat().st_size > 20_000, f"{shot} looks empty"

    # every figure of chapter 8 as the page shows it (its learning-rate sweep is the key result):
    # to read the labels at the size a reader gets them
    report = _open(browser, html / f"{FIGURES_CHAPTER}.html")
    assert report["ready"] is True
    figures = browser.find_elements(By.CSS_SELECTOR, "article .cell_output img")
    assert figures, "chapter 8 shows no figure"
    # a window tall enough for the tallest figure below the sticky header; the width, which sets
    # the scale, stays 1280 px
    browser.set_window_size(1280, 1600)
    try:
        for k, figure in enumerate(figures, 1):
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)
            shot = SCREENSHOTS / f"{FIGURES_CHAPTER.split('/')[-1]}-figure-{k}.png"
            figure.screenshot(str(shot))
            assert shot.stat().st_size > 5_000, f"{shot.name} looks empty"
    finally:
        browser.set_window_size(1280, 900)
