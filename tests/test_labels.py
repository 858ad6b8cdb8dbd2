"""Bundled ImageNet names, user label files and the top-k table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explainer.errors import InputError
from explainer.images.labels import find_labels, imagenet_labels, load_labels, metadata_labels, read_labels, top_k


def test_imagenet_names_in_index_order() -> None:
    names = load_labels(None, 1000)
    assert names is not None and len(names) == 1000
    assert len(set(names)) == 1000
    assert names[0] == "tench"
    assert names[1] == "goldfish"
    assert names[207] == "golden retriever"
    assert names[281] == "tabby"
    assert names[999] == "toilet tissue"
    assert all(name and name == name.strip() and not name.startswith("#") for name in names)


def test_imagenet_labels_returns_a_fresh_list() -> None:
    first = imagenet_labels()
    first[0] = "changed"
    assert imagenet_labels()[0] == "tench"


def test_no_labels_for_other_class_counts() -> None:
    assert load_labels(None, 10) is None
    assert load_labels(None, 1001) is None


def test_user_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("# my classes\n#second header line\ncat\n  dog \nbird\n\n\n", encoding="utf-8")
    assert load_labels(path, 3) == ["cat", "dog", "bird"]
    assert load_labels(str(path), 3) == read_labels(path)


def test_user_labels_override_imagenet(tmp_path: Path) -> None:
    path = tmp_path / "thousand.txt"
    path.write_text("".join(f"class {i}\n" for i in range(1000)), encoding="utf-8")
    names = load_labels(path, 1000)
    assert names is not None and names[207] == "class 207"


def test_labels_count_mismatch_names_both_numbers(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"labels\.txt has 3 names but the model has 5 output classes"):
        load_labels(path, 5)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"a\n\nb\n", "blank line"),
        (b"# only a header\n\n", "no class names"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_bad_labels_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment):
        read_labels(path)


def test_missing_labels_file_and_bad_class_count(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="labels file not found: .*absent.txt"):
        load_labels(tmp_path / "absent.txt", 3)
    with pytest.raises(InputError, match="positive integer"):
        load_labels(None, 0)


def test_top_k_orders_and_probabilities() -> None:
    logits = np.array([0.5, 3.0, -1.0, 2.0, 3.0], dtype=np.float32)
    labels = ["a", "b", "c", "d", "e"]
    rows = top_k(logits, 3, labels)
    assert [r[0] for r in rows] == [1, 4, 3]  # tie between 1 and 4 keeps index order
    assert [r[1] for r in rows] == ["b", "e", "d"]
    assert [r[2] for r in rows] == [3.0, 3.0, 2.0]
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([r[3] for r in rows], softmax[[1, 4, 3]], rtol=1e-6)
    probabilities = [r[3] for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1.0 + 1e-12


def test_top_k_all_classes_sum_to_one_and_index_names() -> None:
    logits = np.random.default_rng(3).normal(size=7) * 50
    rows = top_k(logits, 10, None)
    assert len(rows) == 7
    assert [r[1] for r in rows] == [str(r[0]) for r in rows]
    assert sum(r[3] for r in rows) == pytest.approx(1.0, abs=1e-12)
    assert [r[2] for r in rows] == sorted(logits.tolist(), reverse=True)


def test_top_k_is_stable_for_huge_logits() -> None:
    rows = top_k(np.array([1000.0, 999.0]), 2, None)
    assert rows[0][3] == pytest.approx(1 / (1 + np.exp(-1)), rel=1e-12)


@pytest.mark.parametrize(
    "logits, k, labels, fragment",
    [
        (np.zeros((2, 3)), 1, None, "1-D"),
        (np.array([1.0, np.nan]), 1, None, "not finite at indices \\[1\\]"),
        (np.zeros(3), 0, None, "positive integer"),
        (np.zeros(3), 1, ["a", "b"], "2 labels for 3 class scores"),
    ],
)
def test_top_k_errors(logits, k, labels, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        top_k(logits, k, labels)


def test_labels_read_is_bounded(tmp_path: Path) -> None:
    """At most 16 MiB are read: /dev/zero and a huge file are refused without reading them into memory."""
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"name\n" * (4 * 2**20))
    for path in (huge, Path("/dev/zero")):
        with pytest.raises(InputError, match="is larger than 16 MiB"):
            read_labels(path)
    just_fits = tmp_path / "fits.txt"
    just_fits.write_bytes(b"x" * (16 * 2**20 - 1) + b"\n")
    assert read_labels(just_fits) == ["x" * (16 * 2**20 - 1)]


def test_binary_and_folder_labels_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "labels.bin"
    binary.write_bytes(b"cat\ndog\x00\x00\nbird\n")
    with pytest.raises(InputError, match=r"labels\.bin is not a text file \(it contains NUL bytes\)"):
        read_labels(binary)
    with pytest.raises(InputError, match="is a folder"):
        read_labels(tmp_path)


def test_label_names_keep_their_characters(tmp_path: Path) -> None:
    """Names are data: escape sequences stay in them (the CLI escapes what it prints), so indices never shift."""
    path = tmp_path / "labels.txt"
    path.write_text("cat\x1b[2J\ndog\u202e\n", encoding="utf-8")
    assert read_labels(path) == ["cat\x1b[2J", "dog\u202e"]


@pytest.mark.parametrize("text", [
    '["cat", "dog", "bird"]',
    '{"2": "bird", "0": "cat", "1": "dog"}',
    "{0: 'cat', 1: 'dog', 2: 'bird'}",                       # Ultralytics' names: a Python dict literal
    "cat\ndog\nbird\n",
    "cat\r\ndog\r\nbird",
    "cat, dog ,bird",
])
def test_metadata_label_formats(text: str) -> None:
    assert metadata_labels({"labels": text}, 3) == (["cat", "dog", "bird"], "model metadata 'labels'")


def test_metadata_character_lines_are_taken_verbatim() -> None:
    """PaddleOCR-style character lists: a space and '#' are names like any other."""
    names, where = metadata_labels({"character": "a\n \n#"}, 3)
    assert names == ["a", " ", "#"] and where == "model metadata 'character'"


def test_metadata_label_keys_in_order_and_count_checked() -> None:
    metadata = {"labels": "x,y", "explainer.labels": '["a", "b", "c"]', "character": "p\nq\nr"}
    assert metadata_labels(metadata, 3) == (["a", "b", "c"], "model metadata 'explainer.labels'")
    assert metadata_labels(metadata, 2) == (["x", "y"], "model metadata 'labels'")
    names, why = metadata_labels(metadata, 5)
    assert names is None
    assert why == ("model metadata 'explainer.labels' has 3 names for 5 classes; model metadata 'labels' has 2 names "
                   "for 5 classes; model metadata 'character' has 3 names for 5 classes")
    assert metadata_labels({}, 3) == (None, "")


@pytest.mark.parametrize("text", ["a\n\nb", '{"0": "a", "2": "b"}', "[[1], [2]]", "{0: a}", "a,,b", "[true]"])
def test_metadata_labels_that_are_no_list_of_names(text: str) -> None:
    names, why = metadata_labels({"labels": text}, 2)
    assert names is None and why == "model metadata 'labels' is not a list of names"


def test_find_labels_prefers_the_file_then_metadata_then_imagenet(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("one\ntwo\n", encoding="utf-8")
    metadata = {"labels": '["a", "b"]'}
    assert find_labels(path, 2, metadata) == (["one", "two"], f"labels file {path}")
    assert find_labels(None, 2, metadata) == (["a", "b"], "model metadata 'labels'")
    assert load_labels(None, 2, metadata) == ["a", "b"]
    assert find_labels(None, 2) == (None, "class indices")
    assert find_labels(None, 3, metadata) == (None, "class indices (model metadata 'labels' has 2 names for 3 classes)")
    names, where = find_labels(None, 1000, metadata)
    assert names == imagenet_labels() and where.startswith("ImageNet-1k names (model metadata 'labels' has 2 names")
