"""`explainer explain` on token models and on several-input models (issue 12): texts through the tokenizer next to
the shipped text classifier, token ids from files (no tokenizer needed), fixed inputs from files, and the bad
combinations (one line on stderr, exit code 2, nothing written)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from explainer import Explainer
from tests.support.cli import run_cli
from tests.support.paths import ROOT as REPO

TEXT_MODEL = REPO / "graphs" / "docstring_topics.onnx"
SENTENCES = ["Return the square root of x as a float.", "Remove the directory at path recursively."]


def _one_error(code: int, stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_texts_are_explained_per_token(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["explain", TEXT_MODEL, "--text", SENTENCES[0], "--text", SENTENCES[1],
                                    "--out", out])
    assert code == 0, stderr
    assert "input 'input_ids' token ids [48], fixed inputs 'attention_mask'" in stdout
    assert sorted(p.name for p in out.iterdir()) == [f"text_{i}.{ext}" for i in (0, 1) for ext in ("html", "npz",
                                                                                                   "png")]
    saved = np.load(out / "text_0.npz")
    real = saved["attention_mask"].astype(bool)
    assert saved["relevance"].shape == (48, saved["relevance"].shape[1]) and real.sum() < 48
    np.testing.assert_allclose(saved["token_relevance"], saved["relevance"].sum(axis=1), rtol=1e-5, atol=1e-7)
    assert np.all(saved["token_relevance"][~real] == 0)  # padding is masked out of attention: no relevance
    tokens = [str(t) for t in saved["tokens"][real]]
    assert "root" in tokens and tokens[0] == "[CLS]"
    # the same relevance as the API on the same ids and mask
    ex = Explainer(TEXT_MODEL, cache=False)
    e = ex.explain({"input_ids": saved["input_ids"][None], "attention_mask": saved["attention_mask"][None]})
    np.testing.assert_allclose(e.relevance[0], saved["relevance"], rtol=1e-4, atol=1e-6)
    page = (out / "text_0.html").read_text(encoding="utf-8")
    assert "root" in page and "<script" not in page


def test_token_ids_from_a_file_without_a_tokenizer(tmp_path: Path) -> None:
    alone = tmp_path / "model.onnx"
    shutil.copy(TEXT_MODEL, alone)  # no tokenizer beside it
    ids = np.zeros((1, 48), np.int64)
    ids[0, :4] = [2, 10, 11, 3]
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids[0])) + "\n")
    mask = (ids != 0).astype(np.int64)
    np.save(tmp_path / "mask.npy", mask)
    code, stdout, stderr = run_cli(["explain", alone, tmp_path / "ids.txt", "--fixed",
                                    f"attention_mask={tmp_path / 'mask.npy'}", "--out", tmp_path / "out"])
    assert code == 0, stderr
    assert "#10" in stdout  # tokens shown by id
    saved = np.load(tmp_path / "out" / "ids_0.npz")
    np.testing.assert_array_equal(saved["attention_mask"], mask[0])


@pytest.mark.parametrize("case", ["text-on-image-model", "fixed-format", "fixed-unknown", "text-and-file",
                                  "input-unknown", "ids-too-long"])
def test_bad_combinations(tmp_path: Path, case: str) -> None:
    np.save(tmp_path / "ids.npy", np.ones((1, 50), np.int64))
    args = {"text-on-image-model": [REPO / "graphs" / "digits_cnn.onnx", "--text", "hello"],
            "fixed-format": [TEXT_MODEL, "--text", "hello", "--fixed", "attention_mask"],
            "fixed-unknown": [TEXT_MODEL, "--text", "hello", "--fixed", f"nope={tmp_path / 'ids.npy'}"],
            "text-and-file": [TEXT_MODEL, tmp_path / "ids.npy", "--text", "hello"],
            "input-unknown": [TEXT_MODEL, "--text", "hello", "--input", "ids"],
            "ids-too-long": [TEXT_MODEL, tmp_path / "ids.npy"]}[case]
    expected = {"text-on-image-model": ["--text needs a model that reads token ids"],
                "fixed-format": ["expected NAME=FILE.npy"],
                "fixed-unknown": ["--fixed nope: not a fixed input of the model", "'attention_mask'"],
                "text-and-file": ["give --text or token-id/array files, not both"],
                "input-unknown": ["no input 'ids'; its inputs are 'input_ids', 'attention_mask'"],
                "ids-too-long": ["50 token ids per sample, but the model takes 48"]}[case]
    code, _, stderr = run_cli(["explain", *args, "--out", tmp_path / "out"])
    _one_error(code, stderr, *expected)
    assert not (tmp_path / "out").exists()


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fa, self.fb = nn.Linear(6, 4), nn.Linear(5, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fa(a) + self.fb(b)))


def _pair_files(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The two-input model exported to ``pair.onnx`` and its two inputs saved as ``a.npy`` and ``b.npy``."""
    a, b = np.ones((2, 6), np.float32), np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    path = tmp_path / "pair.onnx"
    torch.onnx.export(_Pair().eval(), (torch.from_numpy(a), torch.from_numpy(b)), str(path), input_names=["a", "b"],
                      output_names=["y"], dynamo=False, opset_version=17,
                      dynamic_axes={"a": {0: "N"}, "b": {0: "N"}, "y": {0: "N"}})
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return path, a, b


def test_several_float_inputs_from_files(tmp_path: Path) -> None:
    path, a, b = _pair_files(tmp_path)
    code, _, stderr = run_cli(["explain", path, tmp_path / "a.npy", "--out", tmp_path / "o1"])
    _one_error(code, stderr, "the model has 2 inputs ('a', 'b'); name the one that receives relevance")
    code, stdout, stderr = run_cli(["explain", path, tmp_path / "b.npy", "--input", "b", "--fixed",
                                    f"a={tmp_path / 'a.npy'}", "--method", "gradient", "--out", tmp_path / "o2"])
    assert code == 0, stderr
    expected = Explainer(path, "gradient", input="b", cache=False).explain({"a": a, "b": b})
    for j in range(2):
        np.testing.assert_allclose(np.load(tmp_path / "o2" / f"b_{j}.npz")["relevance"], expected.relevance[j],
                                   rtol=1e-6)


def test_rewrite_a_token_model(tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "relevance.onnx"
    code, stdout, stderr = run_cli(["rewrite", TEXT_MODEL, "-o", out])
    assert code == 0, stderr
    assert "input 'input_ids' tokens [N, 48], fixed inputs 'attention_mask' [N, 48]" in stdout
    ids = np.zeros((2, 48), np.int64)
    ids[:, :5] = [[2, 10, 11, 12, 3], [2, 20, 21, 3, 0]]
    mask = (ids != 0).astype(np.int64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    relevance = session.run(["relevance"], {"input_ids": ids, "attention_mask": mask,
                                            "target": np.array([1, 2], np.int64)})[0]
    expected = Explainer(TEXT_MODEL, cache=False).explain({"input_ids": ids, "attention_mask": mask}, target=[1, 2])
    np.testing.assert_allclose(relevance, expected.relevance, rtol=1e-4, atol=1e-6)


def test_several_inputs_receive_relevance_from_the_command_line(tmp_path: Path) -> None:
    path, a, b = _pair_files(tmp_path)
    code, _, stderr = run_cli(["explain", path, tmp_path / "a.npy", "--input", "a", "--input", "b",
                               "--out", tmp_path / "o1"])
    assert code == 2 and "give 2 input file(s), one per --input" in stderr
    code, _, stderr = run_cli(["explain", path, tmp_path / "a.npy", tmp_path / "b.npy", "--input", "a", "--input",
                               "b", "--method", "gradient", "--out", tmp_path / "o2"])
    assert code == 0, stderr
    expected = Explainer(path, "gradient", input=["a", "b"], cache=False).explain({"a": a, "b": b})
    saved = np.load(tmp_path / "o2" / "a_1.npz")
    np.testing.assert_allclose(saved["relevance"], expected.relevance_of["a"][1], rtol=1e-6)
    np.testing.assert_allclose(saved["relevance_b"], expected.relevance_of["b"][1], rtol=1e-6)
