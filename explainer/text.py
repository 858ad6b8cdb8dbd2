"""Text inputs for token models: finding and loading a tokenizer offline, encoding texts to fixed-length token ids
and attention masks, reading token ids from a file, and token strings for display.

A tokenizer is a Hugging Face ``tokenizer.json`` read with the optional ``tokenizers`` package (``pip install
'explainer[text]'``); nothing is downloaded. :func:`find_tokenizer` looks, in this order, at the path the user gave (a
file, or a folder holding ``tokenizer.json``), else next to the model: ``<model stem>.tokenizer.json``, then
``tokenizer.json`` in the model's folder (the layout of a Hugging Face export folder).

Token ids from a file (:func:`read_token_ids`) need no tokenizer: a ``.npy`` integer array [T] or [N, T], or a text
file with one sample per line, its ids separated by spaces or commas.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explainer.errors import InputError
from explainer.frontend.inputs import is_attention_mask
from explainer.limits import format_bytes

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_SUFFIX = ".tokenizer.json"
#: largest token-id text file read (64 MiB)
MAX_IDS_TEXT_BYTES = 64 * 2**20
#: names tried for the padding and the mask token when neither the model's metadata nor the tokenizer says
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>")
MASK_TOKENS = ("[MASK]", "<mask>", "<|mask|>")
#: word-piece markers: "##" continues a word (WordPiece); "Ġ" (byte-level BPE) and "▁" (SentencePiece) start one
_CONTINUATION, _WORD_STARTS = "##", ("Ġ", "▁")


@dataclass(frozen=True)
class EncodedText:
    """Texts as a model takes them: ``input_ids`` and ``attention_mask`` int64 [N, T] (1 for a real token, 0 for
    padding), ``tokens`` the T token strings of each sample (padding included), ``lengths`` the real tokens per
    sample and ``truncated`` the tokens cut from each sample to fit T (0: none)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: list[list[str]]
    lengths: list[int]
    truncated: list[int] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """One line per truncated sample, for the user."""
        length = self.input_ids.shape[1]
        return [f"text {i}: {cut} token(s) past the model's {length} were cut off"
                for i, cut in enumerate(self.truncated) if cut]

    def real(self, sample: int, values: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Sample ``sample``'s real tokens (attention mask 1, padding left out) and their entries of ``values`` [T]."""
        keep = self.attention_mask[sample] == 1
        return [t for t, k in zip(self.tokens[sample], keep) if k], np.asarray(values)[keep]

    def feeds(self, input_name: str, fixed_inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The arrays to pass to ``Explainer.explain``: the ids under ``input_name`` and the attention mask under
        every fixed input whose name contains "mask" (others get the Explainer's defaults)."""
        feeds = {input_name: self.input_ids}
        feeds.update({name: self.attention_mask for name in fixed_inputs if is_attention_mask(name)})
        return feeds


def text_input(model: str | os.PathLike | None, length: int, *, texts: Sequence[str] | None = None,
               ids: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None,
               metadata: Mapping[str, str] | None = None) -> tuple[EncodedText, Any]:
    """What ``explainer explain MODEL (--text TEXT... | IDS_FILE) [--tokenizer DIR]`` feeds a token model of
    ``length`` tokens, and the tokenizer used (``None`` when there is none).

    ``texts``: encoded with the tokenizer :func:`find_tokenizer` finds (required), padded with the pad id
    (:func:`special_token_id`, else 0). ``ids``: read with :func:`read_token_ids`; a tokenizer, where one is given or
    lies next to the model and the ``tokenizers`` package is installed, only names the tokens (else ``#<id>``); the
    attention mask is 0 at the pad id when the model's metadata or the tokenizer names one, else all ones."""
    if (texts is None) == (ids is None):
        raise InputError("give the text (--text) or a file of token ids, one of them")
    if texts is not None:
        loaded = load_tokenizer(find_tokenizer(model, tokenizer))
        pad_id = special_token_id(loaded, metadata, "pad")
        return encode_texts(loaded, texts, length, pad_id=0 if pad_id is None else pad_id), loaded
    loaded = None
    if tokenizer is not None:
        loaded = load_tokenizer(find_tokenizer(model, tokenizer))
    else:
        try:
            loaded = load_tokenizer(find_tokenizer(model))
        except InputError:
            loaded = None  # token ids need no tokenizer: the tokens are shown by id
    return ids_as_text(read_token_ids(ids, length), loaded, special_token_id(loaded, metadata, "pad")), loaded


def find_tokenizer(model: str | os.PathLike | None, given: str | os.PathLike | None = None) -> Path:
    """The ``tokenizer.json`` to use for ``model`` (see the module docstring); InputError naming every place looked
    at when there is none."""
    if given is not None:
        path = Path(given)
        candidates = [path / TOKENIZER_FILE] if path.is_dir() else [path]
    elif model is not None:
        model = Path(model)
        candidates = [model.with_name(model.stem + TOKENIZER_SUFFIX), model.parent / TOKENIZER_FILE]
    else:
        raise InputError("no tokenizer given and no model path to look next to; pass --tokenizer DIR or token ids")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise InputError(f"no tokenizer found (looked for {looked}); pass --tokenizer DIR holding a {TOKENIZER_FILE}, "
                     "or token ids from a file")


def load_tokenizer(path: str | os.PathLike) -> Any:
    """The ``tokenizers.Tokenizer`` stored at ``path``; InputError when the ``tokenizers`` package is missing or
    the file is not a tokenizer."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError("reading a tokenizer needs the 'tokenizers' package: pip install 'explainer[text]' "
                         "(or give token ids from a file)") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception subclasses for every kind of bad file
        raise InputError(f"{path}: not a readable tokenizer.json ({' '.join(str(exc).split())[:200]})") from None


def special_token_id(tokenizer: Any, metadata: Mapping[str, str] | None, kind: str) -> int | None:
    """The id of the ``kind`` ("pad" or "mask") token: the model's metadata entry ``<kind>_token_id``, else the
    tokenizer's padding setting (pad only), else the first of :data:`PAD_TOKENS` / :data:`MASK_TOKENS` in its
    vocabulary; ``None`` when none says."""
    value = (metadata or {}).get(f"{kind}_token_id")
    if value is not None:
        try:
            return int(value)
        except ValueError:
            raise InputError(f"model metadata {kind}_token_id={value!r} is not an integer") from None
    if tokenizer is None:
        return None
    if kind == "pad" and tokenizer.padding:
        return int(tokenizer.padding["pad_id"])
    for token in PAD_TOKENS if kind == "pad" else MASK_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return None


def encode_texts(tokenizer: Any, texts: Sequence[str], length: int, *, pad_id: int = 0) -> EncodedText:
    """``texts`` tokenised with the tokenizer's own special tokens (e.g. [CLS] … [SEP]), each cut to ``length``
    tokens by the tokenizer's truncation (special tokens kept; how many were cut is in ``truncated``) and padded
    with ``pad_id`` to ``length``. The tokenizer's own padding and truncation settings are switched off."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise InputError("no text to encode")
    if length < 1:
        raise InputError(f"token length must be positive, got {length}")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    full = [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
    tokenizer.enable_truncation(max_length=length)
    try:
        encodings = tokenizer.encode_batch(list(texts))
    finally:
        tokenizer.no_truncation()
    ids = np.full((len(texts), length), pad_id, np.int64)
    mask = np.zeros((len(texts), length), np.int64)
    pad = tokenizer.id_to_token(pad_id) or f"#{pad_id}"
    tokens, lengths = [], []
    for i, encoding in enumerate(encodings):
        n = len(encoding.ids)
        ids[i, :n], mask[i, :n] = encoding.ids, 1
        tokens.append(list(encoding.tokens) + [pad] * (length - n))
        lengths.append(n)
    truncated = [max(0, f - n) for f, n in zip(full, lengths)]
    return EncodedText(ids, mask, tokens, lengths, truncated)


def read_token_ids(path: str | os.PathLike, length: int | None = None) -> np.ndarray:
    """Token ids int64 [N, T] from a ``.npy`` integer array ([T] is one sample) or a text file (one sample a line,
    ids separated by spaces or commas, blank lines skipped); with ``length``, T must equal it."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            ids = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: cannot read token ids as a .npy array "
                             f"({' '.join(str(exc).split())[:200]})") from None
        if ids.dtype.kind not in "iu":
            raise InputError(f"{path}: token ids must be integers, got dtype {ids.dtype}")
    else:
        ids = _ids_from_text(path)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.size == 0:
        raise InputError(f"{path}: token ids must be [T] or [N, T] and not empty, got shape {list(ids.shape)}")
    if (ids < 0).any() or (ids > np.iinfo(np.int64).max).any():
        raise InputError(f"{path}: token ids must be non-negative int64 values")
    if length is not None and ids.shape[1] != length:
        raise InputError(f"{path}: {ids.shape[1]} token ids per sample, but the model takes {length}")
    return ids.astype(np.int64)


def _ids_from_text(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_IDS_TEXT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read token ids from {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_IDS_TEXT_BYTES:
        raise InputError(f"token-id file {path} is larger than {format_bytes(MAX_IDS_TEXT_BYTES)}")
    rows = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        fields = [f for f in re.split(r"[\s,]+", line.strip()) if f]
        if not fields:
            continue
        if not all(f.isdigit() and f.isascii() for f in fields):
            raise InputError(f"{path}: line {number} holds something other than non-negative integer token ids")
        if rows and len(fields) != len(rows[0]):
            raise InputError(f"{path}: line {number} has {len(fields)} token ids, the first sample {len(rows[0])}")
        rows.append([int(f) for f in fields])
    if not rows:
        raise InputError(f"{path}: no token ids in the file")
    try:
        return np.array(rows, np.int64)
    except OverflowError:
        raise InputError(f"{path}: a token id is larger than int64 allows") from None


def ids_as_text(ids: np.ndarray, tokenizer: Any = None, pad_id: int | None = None) -> EncodedText:
    """Token ids read from a file as an :class:`EncodedText`: the attention mask is 0 where the id is ``pad_id``
    (all ones without one); token strings from ``tokenizer``, or ``#<id>`` without one."""
    ids = np.asarray(ids, np.int64)
    mask = (ids != pad_id).astype(np.int64) if pad_id is not None else np.ones_like(ids)
    tokens = [token_strings(row, tokenizer) for row in ids]
    return EncodedText(ids, mask, tokens, [int(m.sum()) for m in mask], [0] * len(ids))


def token_strings(ids: Sequence[int] | np.ndarray, tokenizer: Any = None) -> list[str]:
    """Each id's token string from ``tokenizer`` (``#<id>`` for ids it does not know, and without a tokenizer)."""
    out = []
    for i in np.asarray(ids).reshape(-1).tolist():
        token = tokenizer.id_to_token(int(i)) if tokenizer is not None else None
        out.append(f"#{i}" if token is None else token)
    return out


def special_tokens(tokenizer: Any) -> set[str]:
    """The tokenizer's special tokens ([CLS], [SEP], <s>, ...); empty without a tokenizer."""
    if tokenizer is None:
        return set()
    return {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}


def merge_pieces(tokens: Sequence[str], values: Sequence[float] | np.ndarray,
                 special: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], np.ndarray]:
    """Word pieces joined into words for display, their values summed (relevance is additive over tokens).

    WordPiece: a token starting with "##" continues the word before. Byte-level BPE ("Ġ") and SentencePiece ("▁"),
    when the tokens use these markers: a token without the marker continues the word before; the marker is dropped.
    Tokens in ``special`` stay words of their own and are never continued."""
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) != len(tokens):
        raise InputError(f"{len(tokens)} tokens but {len(values)} values")
    starts = any(t.startswith(_WORD_STARTS) for t in tokens if t not in special)
    words: list[str] = []
    sums: list[float] = []
    previous_special = True
    for token, value in zip(tokens, values):
        if token in special:
            words.append(token)
            sums.append(float(value))
            previous_special = True
            continue
        if token.startswith(_CONTINUATION) and len(token) > len(_CONTINUATION):
            continues, text = True, token[len(_CONTINUATION):]
        elif starts:
            continues, text = not token.startswith(_WORD_STARTS), token.lstrip("".join(_WORD_STARTS))
        else:
            continues, text = False, token
        if continues and not previous_special and words:
            words[-1] += text
            sums[-1] += float(value)
        else:
            words.append(text)
            sums.append(float(value))
        previous_special = False
    return words, np.asarray(sums)
