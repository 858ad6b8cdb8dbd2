"""``explainer report``: one self-contained HTML page from explain/evaluate/audit folders.

The page is checked in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by selenium):
every image decodes, the AOPC tables hold the evaluated methods, the audit verdict shows, nothing is fetched from the
network, the layout fits a laptop screen and a narrow window, and a screenshot is a non-blank picture. Without the
browser that test fails with how to install it (CI installs it). The other tests need no browser: escaping of every
text from files, bounded thumbnails, lazy loading, errors and the atomic write.
"""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explainer.files import TEMP_PREFIX
from explainer.report.results import THUMBNAIL_SIDE
from tests.support.cli import run_cli
from tests.support.paths import DIGITS, LABELS, digit_path
from tools.report_screenshot import chromium, missing_browser, open_page

SMALL = ["--steps", "10", "--region", "4", "--repeats", "2"]
DIGITS_SHOWN = 4
HOSTILE = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real result folders of the shipped digits model: explain (with SR maps) of four digits, evaluate, audit."""
    work = tmp_path_factory.mktemp("results")
    folders = {"explain": work / "explanations", "evaluate": work / "evaluation", "audit": work / "audit"}
    digits = [digit_path(k) for k in range(DIGITS_SHOWN)]
    for argv in (["explain", DIGITS, *digits, "--labels", LABELS, "--sr", "--out", folders["explain"]],
                 ["evaluate", DIGITS, *digits, *SMALL, "--out", folders["evaluate"]],
                 ["audit", DIGITS, *digits, "--method", "epsilon-plus-flat", *SMALL, "--report", folders["audit"]]):
        code, _, err = run_cli(argv)
        assert code == 0, f"explainer {argv[0]}: {err}"
    return folders


@pytest.mark.slow
def test_report_in_headless_chromium(results: dict[str, Path], tmp_path: Path):
    problem = missing_browser()
    if problem:
        pytest.fail(f"the HTML report test needs a real browser: {problem}")
    page = tmp_path / "report.html"
    code, out, err = run_cli(["report", results["audit"], results["evaluate"], results["explain"], "--labels", LABELS,
                              "-o", page])
    assert code == 0, err
    assert f"{DIGITS_SHOWN} explained image(s)" in out
    methods = list(json.loads((results["evaluate"] / "aopc.json").read_text())["methods"])
    audited = list(json.loads((results["audit"] / "report.json").read_text())["evaluation"]["methods"])
    assert methods == ["epsilon-plus-flat", "gradient", "random"] and audited == ["epsilon-plus-flat", "random"]

    with chromium(1366, 900) as driver:
        images = open_page(driver, page)
        # 4 pictures per digit (overlay, heatmap, SR map, SR overlay) and the AOPC curves, all decoded
        assert len(images) == 4 * DIGITS_SHOWN + 1
        broken = [alt for alt, width, height, decoded in images if not decoded or width == 0 or height == 0]
        assert broken == []
        tables = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.aopc'), t => "
            "Array.from(t.tBodies[0].rows, r => [r.dataset.method, r.cells.length, r.cells[1].textContent]))")
        assert [[row[0] for row in table] for table in tables] == [audited, methods]
        assert all(row[1] == 6 and re.fullmatch(r"-?\d+\.\d{4}", row[2]) for table in tables for row in table)
        assert driver.execute_script("return document.querySelector('.verdict').textContent") == "PASSED"
        cards = driver.execute_script(
            "return Array.from(document.querySelectorAll('article.card'), c => "
            "[c.querySelector('h3').textContent, c.querySelectorAll('table.topk tbody tr').length, "
            "c.querySelectorAll('tr.explained').length])")
        assert cards == [[f"digit_{k}", 5, 1] for k in range(DIGITS_SHOWN)]
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
        assert fetched == []
        overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert driver.execute_script(overflow) <= 0, "the page scrolls sideways on a laptop screen"
        shot = tmp_path / "report.png"
        shot.write_bytes(driver.get_screenshot_as_png())
        driver.set_window_size(700, 900)
        assert driver.execute_script(overflow) <= 0, "the page scrolls sideways in a narrow window"
    with Image.open(shot) as opened:
        assert opened.format == "PNG" and opened.width >= 1000 and opened.height >= 500
        pixels = np.asarray(opened.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20.0, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "the screenshot shows no pictures"


# ------------------------------------------------------------------------------------------------ without browser
def write_explained(folder: Path, stem: str, *, side: int = 40, target: int = 2, seed: str = "logit",
                    conservation: float = 0.9, absorbed: float = 0.125) -> None:
    """A hand-made result set of ``explain``: the .npz (with an unknown key) and four PNGs of ``side`` pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{stem}.npz", relevance=np.ones((side, side), np.float32),
                        logits=np.array([0.5, -1.0, 3.0], np.float32), target=np.int64(target),
                        conservation=np.float32(conservation), absorbed_0=np.float32(absorbed),
                        absorbed_0_label=np.array(HOSTILE), seed=np.array(seed), unknown_key=np.zeros(3))
    colours = np.array([[255, 0, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    rendered = colours[np.indices((side, side)).sum(axis=0) % 3]
    for suffix in ("heatmap", "overlay", "sr", "sr_overlay"):
        Image.fromarray(rendered).save(folder / f"{stem}_{suffix}.png")


def write_evaluation(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    methods = {name: {"aopc": 1.0 + i, "abpc": None, "curve": [0.0, 1.0], "complexity": {"png_bytes": 100.0,
                                                                                          "entropy": 2.0}}
               for i, name in enumerate(names)}
    methods["random"] = {"aopc": 0.5, "abpc": None, "curve": [0.0, 0.5], "complexity": None}
    report = {"settings": {"steps": 1, "region": 4, "grid": "fixed", "model": HOSTILE}, "methods": methods}
    (folder / "aopc.json").write_text(json.dumps(report), encoding="utf-8")


def data_uris(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def decode(uri: str) -> Image.Image:
    kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", uri).groups()
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format.lower() == kind
    return image


def test_every_text_from_files_is_escaped(tmp_path: Path):
    folder = tmp_path / "out<i>"
    write_explained(folder, "x<b>y", seed=HOSTILE)
    write_evaluation(folder, [HOSTILE, "gradient"])
    labels = tmp_path / "labels.txt"
    labels.write_text(f"zero\n{HOSTILE}\nthree & more\n", encoding="utf-8")
    page_path = tmp_path / "report.html"
    code, _, err = run_cli(["report", folder, "--labels", labels, "--title", HOSTILE, "-o", page_path])
    assert code == 0, err
    page = page_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page and "<b>y" not in page and "<i>" not in page
    assert all(tag.startswith('<img src="data:image/') for tag in re.findall(r"<img\b[^>]*", page))
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 6  # title x2, label, seed, kept, method
    assert "out&lt;i&gt;" in page and "x&lt;b&gt;y" in page and "three &amp; more" in page
    assert 'data-method="&lt;script&gt;' in page


def test_page_is_self_contained_with_bounded_lazy_thumbnails(tmp_path: Path):
    folder = tmp_path / "explanations"
    # logit 3: 5 % + 0.125 / 3 kept by a constant input is under LOW_CONSERVATION, 5 % + 0.3 / 3 is not
    write_explained(folder, "small", side=40, conservation=0.05, absorbed=0.125)
    photo = (np.random.default_rng(0).integers(0, 256, (600, 900, 3))).astype(np.uint8)
    write_explained(folder, "large", side=40, conservation=0.05, absorbed=0.3)
    for suffix in ("heatmap", "overlay", "sr", "sr_overlay"):
        Image.fromarray(photo).save(folder / f"large_{suffix}.png")
    page_path = tmp_path / "report.html"
    assert run_cli(["report", folder, "-o", page_path])[0] == 0
    page = page_path.read_text(encoding="utf-8")
    tags = re.findall(r"<img [^>]*>", page)
    assert len(tags) == 8 and all('loading="lazy"' in tag for tag in tags)
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(link.startswith(("data:image/", "#")) for link in links)
    assert not re.search(r"<(script|link|iframe)\b", page) and "http://" not in page and "https://" not in page
    # "large" sorts before "small"; its 900x600 pictures are JPEG thumbnails, the 40x40 rendered maps stay PNG
    sizes = [(decode(uri).format, decode(uri).size) for uri in data_uris(page)]
    assert sizes == [("JPEG", (THUMBNAIL_SIDE, 171))] * 4 + [("PNG", (40, 40))] * 4
    assert page.count('class="pixelated"') == 4
    assert page.count("relevance at the input: 5.0% of the logit") == 2
    assert page.count('<span class="low">relevance at the input') == 1 and "under 10% for 1" in page
    assert "(10.0% of the logit)" in page and "(4.2% of the logit)" in page


def test_images_sort_naturally_and_top_classes_use_the_labels(tmp_path: Path):
    folder = tmp_path / "explanations"
    for stem in ("img_10", "img_2", "img_1"):
        write_explained(folder, stem, side=8, target=0)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n", encoding="utf-8")
    page_path = tmp_path / "r.html"
    assert run_cli(["report", folder, "--labels", labels, "--top", "2", "-o", page_path])[0] == 0
    page = page_path.read_text(encoding="utf-8")
    assert re.findall(r"<h3>(img_\d+)</h3>", page) == ["img_1", "img_2", "img_10"]
    rows = re.findall(r'<td class="name">(\w+) <span class="muted">\((\d)\)</span>', page)
    assert rows == [("bird", "2"), ("cat", "0")] * 3
    assert page.count('<tr class="explained">') == 3  # class 0, second of the top 2
    assert re.search(r"explained: <b>cat <span class=\"muted\">\(0\)</span></b>, logit 0\.500", page)


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "no such folder"), ("empty", "holds no results"), ("corrupt npz", "a.npz: not a readable .npz"),
    ("bad json", "aopc.json: not a readable JSON report"), ("labels count", "has 2 names but"),
    ("over an input", "would overwrite the input"), ("output is a folder", "a folder of that name exists")])
def test_bad_input_writes_nothing(tmp_path: Path, case: str, expected: str):
    folder = tmp_path / "explanations"
    write_explained(folder, "a", side=8)
    output = tmp_path / "report.html"
    argv = ["report", folder]
    if case == "missing":
        argv = ["report", tmp_path / "nothing"]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        argv = ["report", folder, tmp_path / "empty"]
    elif case == "corrupt npz":
        (folder / "a.npz").write_bytes(b"PK\x03\x04 not a zip")
    elif case == "bad json":
        (folder / "aopc.json").write_text('{"methods": ', encoding="utf-8")
    elif case == "labels count":
        (tmp_path / "labels.txt").write_text("a\nb\n", encoding="utf-8")
        argv += ["--labels", tmp_path / "labels.txt"]
    elif case == "over an input":
        output = folder / "a_heatmap.png"
    else:
        output.mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run_cli([*argv, "-o", output])
    assert code == 2 and out == ""
    assert expected in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_written_atomically_next_to_nothing_else(tmp_path: Path):
    folder = tmp_path / "explanations"
    write_explained(folder, "a", side=8)
    target = tmp_path / "new" / "report.html"
    code, out, _ = run_cli(["report", folder, "-o", target])
    assert code == 0 and out.startswith(f"wrote {target}")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.rglob("*"))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

