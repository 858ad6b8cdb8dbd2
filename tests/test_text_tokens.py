"""Text inputs (``explainer/text.py``: finding and loading a tokenizer, encoding to fixed-length ids, token ids from
files, word pieces joined) and token pictures (``explainer/pictures/tokens.py``: terminal, HTML, PNG), with hostile
token text: no ``<script>`` reaches the HTML and no escape sequence of a token reaches the terminal raw."""
from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

from explainer.cli.text import EscapedStdout
from explainer.errors import InputError
from explainer.pictures.tokens import (
    AGAINST_RGB,
    FOR_RGB,
    html_fragment,
    html_page,
    plot_tokens,
    terminal_text,
    token_colours,
    use_colour,
    write_tokens,
)
from explainer.text import (
    TOKENIZER_FILE,
    encode_texts,
    find_tokenizer,
    ids_as_text,
    load_tokenizer,
    merge_pieces,
    read_token_ids,
    special_token_id,
    token_strings,
)
from tests.support.paths import ROOT

TOKENIZER = ROOT / "graphs" / "docstring_topics.tokenizer.json"
HOSTILE = ["[CLS]", "<script>alert(1)</script>", "\x1b[2J\x1b]0;pwned\x07", "a\nb", "[SEP]"]
_OUR_SGR = re.compile(r"\x1b\[[0-9;]*m")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER)


def test_tokenizer_found_next_to_the_model_or_where_given(tmp_path) -> None:
    model = tmp_path / "m.onnx"
    (tmp_path / TOKENIZER_FILE).write_text("{}")
    assert find_tokenizer(model) == tmp_path / TOKENIZER_FILE
    (tmp_path / "m.tokenizer.json").write_text("{}")
    assert find_tokenizer(model) == tmp_path / "m.tokenizer.json"  # the model's own comes first
    other = tmp_path / "other"
    other.mkdir()
    (other / TOKENIZER_FILE).write_text("{}")
    assert find_tokenizer(model, other) == other / TOKENIZER_FILE
    assert find_tokenizer(model, other / TOKENIZER_FILE) == other / TOKENIZER_FILE
    with pytest.raises(InputError, match=r"no tokenizer found \(looked for .*n\.tokenizer\.json, .*tokenizer\.json\)"):
        find_tokenizer(tmp_path / "sub" / "n.onnx")
    with pytest.raises(InputError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path / "m.tokenizer.json")


def test_missing_tokenizers_package_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails as if not installed
    with pytest.raises(InputError, match=r"needs the 'tokenizers' package: pip install 'explainer\[text\]'"):
        load_tokenizer(TOKENIZER)


def test_encoding_pads_and_truncates_to_the_model_length(tokenizer) -> None:
    long = " ".join(["file"] * 30)
    encoded = encode_texts(tokenizer, ["Return the square root of x.", long], 12, pad_id=0)
    assert encoded.input_ids.shape == encoded.attention_mask.shape == (2, 12)
    assert encoded.input_ids.dtype == encoded.attention_mask.dtype == np.int64
    short = encoded.tokens[0]
    assert short[:encoded.lengths[0]] == ["[CLS]", "return", "the", "square", "root", "of", "x", ".", "[SEP]"]
    assert short[encoded.lengths[0]:] == ["[PAD]"] * 3 and list(encoded.input_ids[0, 9:]) == [0, 0, 0]
    assert list(encoded.attention_mask[0]) == [1] * 9 + [0] * 3
    assert encoded.tokens[1] == ["[CLS]"] + ["file"] * 10 + ["[SEP]"] and encoded.attention_mask[1].all()
    assert encoded.truncated == [0, 20] and encoded.notes == ["text 1: 20 token(s) past the model's 12 were cut off"]
    feeds = encoded.feeds("input_ids", {"attention_mask": ((12,), np.int64), "token_type_ids": ((12,), np.int64)})
    assert set(feeds) == {"input_ids", "attention_mask"} and feeds["attention_mask"] is encoded.attention_mask
    assert tokenizer.padding is None and tokenizer.truncation is None  # left as found
    assert special_token_id(tokenizer, {}, "mask") == tokenizer.token_to_id("[MASK]")
    assert special_token_id(tokenizer, {"pad_token_id": "7"}, "pad") == 7
    assert special_token_id(None, {}, "pad") is None


def test_token_ids_from_npy_and_text_files(tmp_path, tokenizer) -> None:
    np.save(tmp_path / "one.npy", np.array([2, 10, 11, 3, 0, 0], np.int32))
    ids = read_token_ids(tmp_path / "one.npy", 6)
    assert ids.dtype == np.int64 and ids.tolist() == [[2, 10, 11, 3, 0, 0]]
    (tmp_path / "ids.txt").write_text("2 10 11 3 0 0\n\n2, 12, 3, 0, 0, 0\n")
    ids = read_token_ids(tmp_path / "ids.txt")
    assert ids.tolist() == [[2, 10, 11, 3, 0, 0], [2, 12, 3, 0, 0, 0]]
    text = ids_as_text(ids, tokenizer, pad_id=0)
    assert text.attention_mask.tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]] and text.lengths == [4, 3]
    assert text.tokens[0][0] == "[CLS]" and token_strings([5, 10**6]) == ["#5", "#1000000"]
    cases = {"ragged.txt": ("1 2 3\n4 5\n", "line 2 has 2 token ids, the first sample 3"),
             "words.txt": ("1 two 3\n", "line 1 holds something other than"),
             "negative.txt": ("1 -2 3\n", "line 1 holds something other than")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError, match=message):
            read_token_ids(tmp_path / name)
    np.save(tmp_path / "float.npy", np.zeros(4, np.float32))
    with pytest.raises(InputError, match="token ids must be integers, got dtype float32"):
        read_token_ids(tmp_path / "float.npy")
    np.save(tmp_path / "neg.npy", np.array([1, -1]))
    with pytest.raises(InputError, match="non-negative"):
        read_token_ids(tmp_path / "neg.npy")
    with pytest.raises(InputError, match="6 token ids per sample, but the model takes 48"):
        read_token_ids(tmp_path / "one.npy", 48)


def test_word_pieces_are_joined_and_their_relevance_summed() -> None:
    words, values = merge_pieces(["[CLS]", "construct", "##e", "##d", "as", "##x", "[SEP]", "##y"],
                                 [1, 2, 3, 4, 5, 6, 7, 8], {"[CLS]", "[SEP]"})
    assert words == ["[CLS]", "constructed", "asx", "[SEP]", "y"] and values.tolist() == [1, 9, 11, 7, 8]
    words, values = merge_pieces(["<s>", "Ġthe", "Ġfold", "er", "</s>"], [1, 2, 3, 4, 5], {"<s>", "</s>"})
    assert words == ["<s>", "the", "folder", "</s>"] and values.tolist() == [1, 2, 7, 5]
    assert merge_pieces(["▁new", "▁date", "time"], [1, 1, 1])[0] == ["new", "datetime"]
    with pytest.raises(InputError, match="2 tokens but 3 values"):
        merge_pieces(["a", "b"], [1, 2, 3])


def test_colours_red_for_blue_against_white_at_zero() -> None:
    colours = token_colours([2.0, 1.0, 0.0, -1.0, -2.0])
    np.testing.assert_allclose(colours[0], FOR_RGB)
    np.testing.assert_allclose(colours[4], AGAINST_RGB)
    np.testing.assert_allclose(colours[2], [1, 1, 1])
    np.testing.assert_allclose(colours[1], (1 + FOR_RGB) / 2)  # half the largest |R|: half-way from white
    assert colours[0, 0] > colours[0, 2] and colours[4, 2] > colours[4, 0]
    np.testing.assert_allclose(token_colours([0.0, np.nan]), np.ones((2, 3)))


def test_hostile_token_text_never_reaches_terminal_or_html_raw() -> None:
    values = [0.5, 1.0, -1.0, 0.2, 0.0]
    plain = terminal_text(HOSTILE, values)
    assert "\x1b" not in plain and "\n" not in plain and "\x07" not in plain
    assert plain.startswith("[CLS][+0.5] <script>alert(1)</script>[+1] \\x1b[2J\\x1b]0;pwned\\x07[-1] a\\nb[+0.2]")
    for truecolour in (True, False):
        coloured = terminal_text(HOSTILE, values, colour=True, truecolour=truecolour)
        assert "\x1b" not in _OUR_SGR.sub("", coloured) and "\n" not in coloured
        assert "\\x1b[2J" in coloured
    assert "\x1b[48;2;214;28;28m" in terminal_text(HOSTILE, values, colour=True)  # strongest positive: FOR_RGB
    assert "\x1b[48;5;" in terminal_text(HOSTILE, values, colour=True, truecolour=False)
    fragment = html_fragment(HOSTILE, values)
    assert "<script>" not in fragment and "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    assert "\x1b" not in fragment and "\\x1b[2J" in fragment and 'title="-1"' in fragment
    page = html_page([(HOSTILE, values, "<b>caption</b>")], title="<img src=x onerror=alert(1)>")
    assert "<img" not in page and "<b>" not in page and page.startswith("<!DOCTYPE html>")


def test_colour_only_on_a_terminal_without_no_color(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLORTERM", "truecolor")
    assert use_colour(_Terminal()) and not use_colour(io.StringIO())
    terminal = _Terminal()
    write_tokens(HOSTILE, [1, 1, -1, 0, 0], EscapedStdout(terminal))  # the CLI's stdout: colour codes pass, once
    line = terminal.getvalue()
    assert line.endswith("\n") and "\x1b[48;2;" in line and "\x1b" not in _OUR_SGR.sub("", line)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_Terminal())
    terminal = _Terminal()
    write_tokens(HOSTILE, [1, 1, -1, 0, 0], EscapedStdout(terminal))
    assert "\x1b" not in terminal.getvalue() and terminal.getvalue().endswith("[+0]\n")
    assert terminal.getvalue().count("\n") == 1 and "[+1]" in terminal.getvalue()


def test_png_shows_the_tokens_on_their_colours(tmp_path) -> None:
    path = plot_tokens(["[CLS]", "square", "root", "of", "x", "[SEP]"], [0.0, 2.0, 1.0, 0.0, -2.0, 0.0],
                       tmp_path / "t.png", title="numbers (class 1)")
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3).astype(int)
    assert picture.size[0] >= 500
    for colour in (FOR_RGB, AGAINST_RGB):
        near = np.abs(pixels - np.round(colour * 255)).max(axis=1) <= 3
        assert near.sum() > 100  # a filled box of each sign
