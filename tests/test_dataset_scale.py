"""Evaluations at dataset scale: images from folders (recursive), glob patterns and manifests; per-image rows
journaled in rows.jsonl and the report reduced from them (the same numbers as in memory, whatever the order or
repetition of the rows); resume after an interrupt (a journal cut mid-line, a process killed with SIGKILL) with every
image once; a resume with other settings refused; a bad image skipped and counted (or, with --fail-fast, the end of
the run); the Ray engine refused in one line without Ray; memory flat as the number of images grows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explainer import InputError, evaluate
from explainer.evaluation.compare import report_from_rows
from explainer.evaluation.rows import Journal, read_rows
from explainer.images.preprocess import load_batch, preprocessing
from explainer.images.sources import gather_images
from tests.support.cli import run_cli
from tests.support.paths import DIGITS, DIGITS_SPEC, EXAMPLES, ROOT

IMAGES = sorted(EXAMPLES.glob("digit_*.png"))
TINY = ["--steps", "4", "--region", "8", "--repeats", "2"]


def _copy_digits(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(count):
        path = folder / f"img_{k:04d}.png"
        path.write_bytes(IMAGES[k % len(IMAGES)].read_bytes())
        out.append(path)
    return out


def _row_keys(rows_path: Path) -> Counter:
    _, rows = read_rows(rows_path)
    return Counter((row["image"], row["method"]) for row in rows if "error" not in row)


# ---------------------------------------------------------------------------------------------- inputs


def test_folders_are_one_level_unless_recursive_and_patterns_are_expanded(tmp_path):
    top = _copy_digits(tmp_path / "data", 2)
    nested = _copy_digits(tmp_path / "data" / "sub", 1)
    (tmp_path / "data" / ".hidden").mkdir()
    _copy_digits(tmp_path / "data" / ".hidden", 1)
    assert gather_images([tmp_path / "data"]).paths == top
    assert gather_images([tmp_path / "data"], recursive=True).paths == sorted(top + nested)
    assert gather_images([str(tmp_path / "data" / "**" / "*.png")]).paths == sorted(top + nested)
    assert gather_images([str(tmp_path / "data" / "img_000[1]*")]).paths == top[1:]
    with pytest.raises(InputError, match="matches no image file"):
        gather_images([str(tmp_path / "nothing" / "*.png")])


def test_a_manifest_lists_paths_relative_to_itself_with_optional_targets(tmp_path):
    images = _copy_digits(tmp_path / "set" / "images", 3)
    plain = tmp_path / "set" / "plain.txt"
    plain.write_text(f"# a comment\nimages/img_0000.png\n\n{images[2]}\n", encoding="utf-8")
    assert gather_images([], manifests=[plain]) == gather_images([images[0], images[2]])
    targeted = tmp_path / "set" / "targets.csv"
    targeted.write_text("path,target\nimages/img_0001.png,7\nimages/img_0002.png,3\n", encoding="utf-8")
    listed = gather_images([], manifests=[targeted])
    assert listed.paths == images[1:] and listed.targets == [7, 3]
    with pytest.raises(InputError, match="target for every image or for none"):
        gather_images([images[0]], manifests=[targeted])
    bad = tmp_path / "set" / "bad.csv"
    bad.write_text("images/img_0001.png,seven\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.csv:1: target 'seven'"):
        gather_images([], manifests=[bad])


def test_manifest_targets_are_the_scored_classes(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"{p},{(k + 1) % 10}\n" for k, p in enumerate(IMAGES[:3])), encoding="utf-8")
    out = tmp_path / "out"
    code, _, stderr = run_cli(["evaluate", DIGITS, "--manifest", manifest, *TINY, "--methods", "gradient",
                               "--out", out])
    assert code == 0, stderr
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    assert report["settings"]["score"] == "pre-softmax logit of the class given for each image"
    rows = [row for row in read_rows(out / "rows.jsonl")[1] if row["method"] == "gradient"]
    assert [row["target"] for row in rows] == [1, 2, 3]
    assert all(row["switched0"] for row in rows)                # digit k's image is not predicted as k + 1


# ---------------------------------------------------------------------------------------------- rows


def test_the_journal_gives_the_report_computed_in_memory(tmp_path):
    """The CLI reduces aopc.json from rows.jsonl; the Python API keeps the rows in memory: the numbers agree to the
    last bit, and shuffled, repeated rows reduce to the same report."""
    out = tmp_path / "out"
    code, _, stderr = run_cli(["evaluate", DIGITS, *IMAGES[:5], *TINY, "--order", "both", "--chunk", "2",
                               "--out", out])
    assert code == 0, stderr
    stored = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    x, _ = load_batch(IMAGES[:5], DIGITS_SPEC, preprocessing("unit", channels=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = evaluate(str(DIGITS), x, ["epsilon-plus-flat", "gradient"], low=0.0, high=1.0,
                          orders=("morf", "lerf"), steps=4, region=8, repeats=2, provider="cpu", progress=False)
    for name in ("epsilon-plus-flat", "gradient", "random"):
        assert stored["methods"][name]["per_image"] == memory["methods"][name]["per_image"]
        assert stored["methods"][name]["aopc"] == memory["methods"][name]["aopc"]
    assert stored["methods"]["gradient"]["aopc_ci"] == memory["methods"]["gradient"]["aopc_ci"]
    assert Counter(_row_keys(out / "rows.jsonl").values()) == {1: 15}       # 5 images × 3 methods, each once

    from explainer.evaluation.compare import EvaluationSpec
    spec = EvaluationSpec(model=str(DIGITS), methods=("epsilon-plus-flat", "gradient"), orders=("morf", "lerf"),
                          include_random=True, steps=4, region=8, perturb="uniform", low=0.0, high=1.0, repeats=2,
                          seed=0, grid="fixed", batch=128, signal_norm="l2", seed_mode=None, provider="cpu",
                          input_shape=None, shares={}, source=memory["settings"]["model"], layout="NCHW",
                          region_choice=memory["settings"]["region_choice"])
    rows = list(read_rows(out / "rows.jsonl")[1])
    shuffled = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))] + rows[:4]
    assert report_from_rows(spec, shuffled, 5) == report_from_rows(spec, rows, 5)


def test_resume_after_a_journal_cut_mid_line_redoes_only_what_is_missing(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["evaluate", DIGITS, *IMAGES[:6], *TINY, "--chunk", "2"]
    assert run_cli([*common, "--out", full])[0] == 0
    text = (full / "rows.jsonl").read_bytes()
    cut.mkdir()
    (cut / "rows.jsonl").write_bytes(text[:len(text) // 2])        # half the rows, the last one cut short
    kept = len(text[:len(text) // 2].splitlines()) - 2
    code, stdout, stderr = run_cli([*common, "--out", cut, "--resume"])
    assert code == 0, stderr
    assert (cut / "aopc.json").read_text(encoding="utf-8") == (full / "aopc.json").read_text(encoding="utf-8")
    keys = _row_keys(cut / "rows.jsonl")
    assert len(keys) == 18 and set(keys.values()) == {1} and kept > 0


def test_a_resume_with_other_settings_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    assert run_cli(["evaluate", DIGITS, *IMAGES[:2], *TINY, "--methods", "gradient", "--out", out])[0] == 0
    before = (out / "rows.jsonl").read_bytes()
    code, _, stderr = run_cli(["evaluate", DIGITS, *IMAGES[:2], "--steps", "5", "--region", "8", "--repeats", "2",
                               "--methods", "gradient", "--out", out, "--resume"])
    assert code == 2 and stderr.count("\n") == 1 and "other settings (steps differ)" in stderr
    code, _, stderr = run_cli(["evaluate", DIGITS, *IMAGES[:3], *TINY, "--methods", "gradient", "--out", out,
                               "--resume"])
    assert code == 2 and "image_list_sha256" in stderr and "images" in stderr
    assert (out / "rows.jsonl").read_bytes() == before


def test_journal_drops_a_cut_line_and_refuses_a_damaged_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    with Journal(path, {"a": 1}, ["m"]) as journal:
        journal.append([{"image": 0, "method": "m"}, {"image": 1, "method": "m"}])
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])
    with Journal(path, {"a": 1}, ["m"], resume=True) as journal:
        assert journal.done(0) and not journal.done(1) and journal.resumed == 1
        journal.append([{"image": 1, "method": "m"}])
    assert path.read_bytes() == whole
    path.write_bytes(whole.replace(b'"image":0', b'"image":0,,'))
    with pytest.raises(InputError, match="rows.jsonl:2: damaged line"):
        Journal(path, {"a": 1}, ["m"], resume=True)


# ---------------------------------------------------------------------------------------------- bad images


def test_a_bad_image_is_skipped_and_counted_unless_fail_fast(tmp_path):
    images = _copy_digits(tmp_path / "data", 4)
    images[1].write_bytes(b"not an image")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["evaluate", DIGITS, tmp_path / "data", *TINY, "--chunk", "3", "--out", out])
    assert code == 0, stderr
    assert "3 of 4 image(s) evaluated, 1 could not be read (skipped):" in stdout and "img_0001.png" in stdout
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    assert report["settings"]["images"] == 3 and len(report["methods"]["gradient"]["per_image"]) == 3
    assert report["settings"]["image_files"] == [str(p) for p in images if p != images[1]]
    assert [entry["index"] for entry in report["settings"]["failed_images"]] == [1]
    code, _, stderr = run_cli(["evaluate", DIGITS, tmp_path / "data", *TINY, "--fail-fast", "--out",
                               tmp_path / "fast"])
    assert code == 2 and "img_0001.png" in stderr


def test_the_ray_engine_without_ray_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code, _, stderr = run_cli(["evaluate", DIGITS, IMAGES[0], *TINY, "--engine", "ray", "--out", tmp_path / "o"])
    assert code == 2 and stderr.count("\n") == 1 and "pip install explainer[ray]" in stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- crash and memory


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_with_every_image_once(tmp_path):
    folder = tmp_path / "data"
    _copy_digits(folder, 60)
    common = [sys.executable, "-m", "explainer", "evaluate", str(DIGITS), str(folder), "--steps", "8", "--region",
              "4", "--repeats", "4", "--chunk", "2", "--provider", "cpu"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*common, "--out", str(killed)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    journal = killed / "rows.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") > 10:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (killed / "aopc.json").exists()
    resumed = subprocess.run([*common, "--out", str(killed), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([*common, "--out", str(tmp_path / "whole")], cwd=ROOT, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert (killed / "aopc.json").read_text(encoding="utf-8") == \
        (tmp_path / "whole" / "aopc.json").read_text(encoding="utf-8")
    keys = _row_keys(journal)
    assert len(keys) == 60 * 3 and set(keys.values()) == {1}


MEASURE = textwrap.dedent("""
    import resource, sys
    from explainer.cli import main
    code = main(sys.argv[1:])
    print("RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
""")


@pytest.mark.slow
def test_memory_stays_flat_as_the_number_of_images_grows(tmp_path):
    """Peak RSS of an evaluation of 2000 tiny images is within 40 MiB of that of 200 (the per-image rows and the
    report grow by a few KiB an image; the images themselves are read a chunk at a time)."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2000):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{k:05d}.png")
    peaks = {}
    for count in (200, 2000):
        manifest = tmp_path / f"m{count}.txt"
        manifest.write_text("".join(f"many/{k:05d}.png\n" for k in range(count)), encoding="utf-8")
        result = subprocess.run([sys.executable, "-c", MEASURE, "evaluate", str(DIGITS), "--manifest",
                                 str(manifest), "--steps", "2", "--region", "8", "--repeats", "1", "--methods",
                                 "gradient", "--provider", "cpu", "--out", str(tmp_path / f"o{count}")],
                                cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = next(line for line in result.stdout.splitlines() if line.startswith("RSS"))
        peaks[count] = int(line.split()[1]) * 1024
        assert line.split()[2] == "0", result.stderr
    assert peaks[2000] - peaks[200] < 40 * 2**20, peaks
