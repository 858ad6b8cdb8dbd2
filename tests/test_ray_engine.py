"""The Ray engine on a local Ray instance (2 CPUs, no dashboard, no network), shared by the module: the same
aopc.json and rows as the local engine on the digits model; an actor killed with SIGKILL mid-run is restarted and
the run completes with every image once; a resume on Ray skips the images done; a bad image with --fail-fast is the
run's one-line error, not Ray's traceback."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from explainer.evaluation.rows import read_rows
from tests.support.cli import run_cli
from tests.support.paths import DIGITS, EXAMPLES, ROOT

ray = pytest.importorskip("ray", reason="Ray is the optional engine: pip install explainer[ray]")

IMAGES = sorted(EXAMPLES.glob("digit_*.png"))
TINY = ["--steps", "4", "--region", "8", "--repeats", "2", "--provider", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _keys(rows_path: Path) -> Counter:
    return Counter((row["image"], row["method"]) for row in read_rows(rows_path)[1] if "error" not in row)


def _actor_pids() -> list[int]:
    """The processes of the engine's actors (Ray names them after the class in their command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"_RowWorker" in command:
                pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_ray_gives_the_aopc_json_of_the_local_engine(tmp_path):
    common = ["evaluate", DIGITS, *IMAGES[:6], *TINY, "--order", "both", "--chunk", "2"]
    code, _, stderr = run_cli([*common, "--out", tmp_path / "local"])
    assert code == 0, stderr
    code, stdout, stderr = run_cli([*common, "--engine", "ray", "--workers", "2", "--out", tmp_path / "ray"])
    assert code == 0, stderr
    assert "6 of 6 image(s) evaluated" in stdout
    local, distributed = ((tmp_path / name / "aopc.json").read_text(encoding="utf-8") for name in ("local", "ray"))
    assert distributed == local
    assert sorted(_keys(tmp_path / "ray" / "rows.jsonl").items()) == \
        sorted(_keys(tmp_path / "local" / "rows.jsonl").items())


@pytest.mark.slow
def test_ray_evaluates_feature_rows_as_the_local_engine(tmp_path):
    """A .npy batch (the wine MLP's held-out rows, the training mean as baseline) through Ray: the same aopc.json."""
    wine = ROOT / "graphs" / "wine_mlp.onnx"
    common = ["evaluate", wine, EXAMPLES / "wine_test_rows.npy", "--baseline-row", EXAMPLES / "wine_train_mean.npy",
              "--chunk", "8", "--repeats", "2"]
    code, _, stderr = run_cli([*common, "--out", tmp_path / "local"])
    assert code == 0, stderr
    code, stdout, stderr = run_cli([*common, "--engine", "ray", "--workers", "2", "--out", tmp_path / "ray"])
    assert code == 0, stderr
    assert "36 sample(s) evaluated" in stdout
    local, distributed = ((tmp_path / name / "aopc.json").read_text(encoding="utf-8") for name in ("local", "ray"))
    assert distributed == local


@pytest.mark.slow
def test_a_killed_actor_is_restarted_and_every_image_counted_once(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for k in range(40):
        (folder / f"{k:03d}.png").write_bytes(IMAGES[k % 10].read_bytes())
    common = ["evaluate", DIGITS, folder, "--steps", "8", "--region", "4", "--repeats", "3", "--provider", "cpu",
              "--chunk", "1", "--methods", "gradient,random"]
    journal = tmp_path / "ray" / "rows.jsonl"
    killed: list[int] = []

    def kill_one_actor_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") > 4:
                pids = _actor_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_actor_mid_run)
    killer.start()
    code, stdout, stderr = run_cli([*common, "--engine", "ray", "--workers", "2", "--out", tmp_path / "ray"])
    killer.join()
    assert code == 0, stderr
    assert killed, "no actor was killed mid-run"
    assert "40 of 40 image(s) evaluated" in stdout
    keys = _keys(journal)
    assert len(keys) == 80 and set(keys.values()) == {1}
    code, _, stderr = run_cli([*common, "--out", tmp_path / "local"])
    assert code == 0, stderr
    assert (tmp_path / "ray" / "aopc.json").read_text(encoding="utf-8") == \
        (tmp_path / "local" / "aopc.json").read_text(encoding="utf-8")


@pytest.mark.slow
def test_ray_resumes_a_local_journal_and_reports_a_bad_image_in_one_line(tmp_path):
    out = tmp_path / "out"
    common = ["evaluate", DIGITS, *IMAGES[:4], *TINY, "--chunk", "1", "--methods", "gradient"]
    assert run_cli([*common, "--out", out])[0] == 0
    whole = (out / "aopc.json").read_text(encoding="utf-8")
    lines = (out / "rows.jsonl").read_bytes().splitlines(keepends=True)
    (out / "rows.jsonl").write_bytes(b"".join(lines[:4]))               # header and three rows
    code, _, stderr = run_cli([*common, "--out", out, "--resume", "--engine", "ray", "--workers", "1"])
    assert code == 0, stderr
    assert (out / "aopc.json").read_text(encoding="utf-8") == whole
    assert set(_keys(out / "rows.jsonl").values()) == {1} and len(_keys(out / "rows.jsonl")) == 4
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, _, stderr = run_cli(["evaluate", DIGITS, IMAGES[0], bad, *TINY, "--engine", "ray", "--fail-fast",
                               "--out", tmp_path / "fast"])
    assert code == 2 and stderr.count("\n") == 1 and "bad.png" in stderr, stderr
