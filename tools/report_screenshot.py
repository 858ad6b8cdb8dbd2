"""Make the README's screenshot of the HTML report: run explain, evaluate and audit on the shipped digits model, write
the report, open it in headless Chromium and save a screenshot.

    python -m tools.report_screenshot [--out docs/img/report.png] [--work DIR]

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``selenium`` (the ``test`` extra). The browser
helpers here are shared with tests/test_report_html.py.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver (Debian/Ubuntu), and pip install -e '.[test]' for selenium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")
"""Headless, as root, in a closed network: no sandbox (root), no background connections Chromium would retry."""

LOAD_ALL = """
const done = arguments[arguments.length - 1];
const frames = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
(async () => {
  for (let y = 0; y < document.documentElement.scrollHeight; y += window.innerHeight) {
    window.scrollTo(0, y);
    await frames();
  }
  const decoded = await Promise.all(Array.from(document.images, img => img.decode().then(() => true, () => false)
      .then(ok => [img.alt, img.naturalWidth, img.naturalHeight, ok])));
  window.scrollTo(0, 0);
  await frames();
  done(decoded);
})();
"""
"""Browser script: scroll through the page a screen at a time, letting each screen render so that its lazy images
start loading, then decode every image; [alt, naturalWidth, naturalHeight, decoded] per image."""


def missing_browser() -> str | None:
    """Why the browser cannot run here (with how to install it), or None when Chromium, its driver and selenium are
    all present."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package")
    return f"missing {', '.join(absent)}; install with: {INSTALL}" if absent else None


@contextlib.contextmanager
def chromium(width: int = 1366, height: int = 900) -> Iterator[Any]:
    """A selenium WebDriver for headless Chromium with a fresh profile, closed (and its profile removed) afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="explainer-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_script_timeout(120)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, page: Path) -> list[list[Any]]:
    """Load ``page``, scroll through it so that lazy images load, and return :data:`LOAD_ALL`'s result."""
    driver.get(page.resolve().as_uri())
    return driver.execute_async_script(LOAD_ALL)


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run the block in ``path``, then return to the previous working directory."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def make_results(work: Path) -> list[Path]:
    """Run explain (with SR maps), evaluate and audit on the shipped digits model (from the repository's root) into
    ``work``; the three result folders, in the order the report shows them (the verdict and the AOPC table first)."""
    from explainer.cli import main

    model, images = Path("graphs", "digits_cnn.onnx"), Path("examples")
    labels = images / "digits_labels.txt"
    small = ["--steps", "10", "--region", "4", "--repeats", "2"]
    folders = [work / "audit", work / "evaluation", work / "explanations"]
    commands = [
        ["audit", model, images, "--method", "epsilon-plus-flat", "--min-gain", "0.5", *small, "--report", folders[0]],
        ["evaluate", model, images, *small, "--out", folders[1]],
        ["explain", model, *sorted(images.glob("digit_*.png")), "--labels", labels, "--sr", "--out", folders[2]],
    ]
    for command in commands:
        code = main([str(a) for a in command])
        if code != 0:
            raise SystemExit(f"explainer {command[0]} failed with exit code {code}")
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png", help="screenshot PNG")
    parser.add_argument("--work", type=Path, help="folder for the result folders and report.html (default: temporary)")
    parser.add_argument("--width", type=int, default=1366, help="browser window width (default 1366, a laptop)")
    parser.add_argument("--height", type=int, default=1700, help="browser window height (default 1700)")
    args = parser.parse_args()
    problem = missing_browser()
    if problem:
        raise SystemExit(problem)
    from explainer.cli import main as explainer

    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="explainer-report-")))
        work = work.resolve()
        with working_directory(ROOT):  # the reports name the model and images as the README's commands do
            folders = make_results(work)
        page = work / "report.html"
        labels = ROOT / "examples" / "digits_labels.txt"
        with working_directory(work):  # the page names the folders as a user in that folder would
            code = explainer(["report", *(f.name for f in folders), "--labels", str(labels), "-o", page.name])
        if code != 0:
            raise SystemExit(f"explainer report failed with exit code {code}")
        with chromium(args.width, args.height) as driver:
            broken = [alt for alt, width, _, ok in open_page(driver, page) if not ok or width == 0]
            if broken:
                raise SystemExit(f"images that did not decode: {broken}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
