"""Train the small text classifier shipped as ``graphs/docstring_topics.onnx``, with its tokenizer, and define it.

Data: sentences from the docstrings of Python standard-library modules (installed with every Python, so nothing is
downloaded), labelled by the topic of the module they document: ``files`` (os, os.path, shutil, pathlib, glob,
fnmatch, tempfile, filecmp, stat), ``numbers`` (math, cmath, statistics, decimal, fractions, numbers, random),
``time`` (time, datetime, calendar, zoneinfo, sched) and ``text`` (string, re, textwrap, difflib, unicodedata,
codecs). Each module's docstring and those of its public functions, classes and their public members are split into
sentences; sentences of 4 to 40 words with at least 3 alphabetic words are kept, and one found under two topics is
dropped. The split is by a hash of the sentence (SHA-256, 1 in 5 held out), so it does not depend on the order the
sentences are found in. The data depend on the Python version (recorded in the JSON, with a fingerprint).

Tokenizer: a lower-casing WordPiece tokenizer (``tokenizers``; [PAD]=0, [UNK], [CLS], [SEP], [MASK]) whose
vocabulary is the training split's characters and frequent words (:func:`train_tokenizer`), with a "[CLS] … [SEP]"
template. Network (:class:`TextClassifier`): BERT-style, post-LN: token
embedding plus learned position embedding, LayerNorm; two encoder blocks of multi-head self-attention (q/k/v Linear
layers, scores masked by the attention mask as ``(1 - mask) * finfo.min``, softmax) and a GELU MLP, each added to its
input and normalised; a linear head on the [CLS] token. Training masks a random share of the tokens with [MASK]
(so a removed token looks like one seen in training) and runs the digits models' loop
(:func:`graphs.train_digits_cnn.fit`) on one CPU thread.

Writes ``graphs/docstring_topics.onnx`` (legacy exporter, opset 17; inputs "input_ids" and "attention_mask" int64
[N, 48], output "logits" [N, 4]; metadata ``explainer.labels``, ``pad_token_id``, ``mask_token_id``),
``graphs/docstring_topics.tokenizer.json`` (found next to the model) and ``graphs/docstring_topics.json`` (data,
split, accuracy, settings, example sentences). Then draws ``docs/img/text_docstring_topics.png``, the README picture
(``--figure-only`` redraws it from the shipped files without training).

Usage: ``python -m graphs.train_text_classifier [--epochs 20] [--seed 0] [--figure-only]``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import math
import platform
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graphs.train_digits_cnn import fit

REPO = Path(__file__).resolve().parents[1]
NAME = "docstring_topics"
ONNX_PATH = REPO / "graphs" / f"{NAME}.onnx"
META_PATH = REPO / "graphs" / f"{NAME}.json"
TOKENIZER_PATH = REPO / "graphs" / f"{NAME}.tokenizer.json"
FIGURE_PATH = REPO / "docs" / "img" / f"text_{NAME}.png"
OPSET = 17
SEQ_LEN = 48
#: topic -> the standard-library modules whose docstrings give its sentences
TOPICS: dict[str, tuple[str, ...]] = {
    "files": ("os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "stat"),
    "numbers": ("math", "cmath", "statistics", "decimal", "fractions", "numbers", "random"),
    "time": ("time", "datetime", "calendar", "zoneinfo", "sched"),
    "text": ("string", "re", "textwrap", "difflib", "unicodedata", "codecs"),
}
LABELS = tuple(TOPICS)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: the example sentences (README, tests) have this many words, each of letters only (before its punctuation)
EXAMPLE_WORDS = (6, 14)
DATA_SOURCE = "docstrings of Python standard-library modules (see TOPICS in graphs/train_text_classifier.py)"
DATA_LICENCE = "Python Software Foundation License (the docstrings are part of CPython)"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines the tokenizer and the trained weights."""

    seed: int = 0
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 2
    test_every: int = 5  # a sentence is held out when its SHA-256 modulo test_every is 0
    vocab_size: int = 2000
    min_frequency: int = 2
    seq_len: int = SEQ_LEN
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 128
    dropout: float = 0.1
    mask_share: float = 0.15
    max_shift_px: int = 0  # fit()'s augmentation argument; token masking is set by mask_share
    optimizer: str = "AdamW, linear warm-up then cosine learning-rate decay"
    augmentation: str = "each real token other than [CLS]/[SEP] replaced by [MASK] with probability mask_share"


# --- data ---------------------------------------------------------------------------------------------------------

def _docstrings(module: Any) -> list[str]:
    """The docstrings of ``module``, of its public functions and classes defined there, and of their public members,
    in name order."""
    found = [module.__doc__]
    for name, value in sorted(vars(module).items()):
        if name.startswith("_") or inspect.ismodule(value) or not callable(value):
            continue
        if getattr(value, "__module__", None) not in (module.__name__, None):
            continue
        found.append(value.__doc__)
        if inspect.isclass(value):
            found += [getattr(member, "__doc__", None) for key, member in sorted(vars(value).items())
                      if not key.startswith("_") and (callable(member) or isinstance(member, property))]
    return [d for d in found if isinstance(d, str)]


def _sentences(doc: str) -> list[str]:
    """Prose sentences of one docstring: doctest lines dropped, whitespace collapsed, 4-40 words, 3 alphabetic."""
    prose = " ".join(line for line in doc.splitlines() if not line.strip().startswith((">>>", "...")))
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(prose.split())):
        words = sentence.split()
        if 4 <= len(words) <= 40 and sum(w.isalpha() for w in words) >= 3:
            out.append(sentence)
    return out


def load_sentences() -> list[tuple[str, int]]:
    """(sentence, topic index) pairs, sorted; a sentence found under two topics is left out."""
    topics: dict[str, set[int]] = {}
    for label, modules in enumerate(TOPICS.values()):
        for module in modules:
            for doc in _docstrings(importlib.import_module(module)):
                for sentence in _sentences(doc):
                    topics.setdefault(sentence, set()).add(label)
    return sorted((s, next(iter(t))) for s, t in topics.items() if len(t) == 1)


def held_out(sentence: str, every: int) -> bool:
    """Whether ``sentence`` belongs to the test split (its SHA-256 modulo ``every`` is 0)."""
    return int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:8], "big") % every == 0


def split(pairs: list[tuple[str, int]], every: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) pairs."""
    test = [p for p in pairs if held_out(p[0], every)]
    return [p for p in pairs if not held_out(p[0], every)], test


def fingerprint(pairs: list[tuple[str, int]]) -> str:
    """SHA-256 of the labelled sentences, to tell whether another Python gives the same data."""
    return hashlib.sha256("".join(f"{label}\t{s}\n" for s, label in pairs).encode()).hexdigest()


# --- tokenizer ----------------------------------------------------------------------------------------------------

def train_tokenizer(texts: list[str], settings: TrainSettings) -> Any:
    """A lower-casing WordPiece tokenizer for ``texts`` with a "[CLS] $A [SEP]" template. Its vocabulary is counted
    here rather than by a ``tokenizers`` trainer, whose result changes from run to run (count ties are broken in
    hash order): the special tokens, every character seen (alone and as a "##" continuation, so no word is
    unknown), then the words seen at least ``min_frequency`` times, most frequent first (ties alphabetical), up to
    ``vocab_size``."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts
                    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({ch for word in words for ch in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{ch}" for ch in chars)]
    frequent = sorted((w for w, n in words.items() if n >= settings.min_frequency and len(w) > 1),
                      key=lambda w: (-words[w], w))
    vocab += frequent[:max(0, settings.vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def encode(tokenizer: Any, texts: list[str], length: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask int64 [N, length], as ``explainer.text`` encodes them for the CLI."""
    from explainer.text import encode_texts

    encoded = encode_texts(tokenizer, texts, length, pad_id=tokenizer.token_to_id("[PAD]"))
    return encoded.input_ids, encoded.attention_mask


# --- network ------------------------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """BERT's multi-head self-attention: q, k, v Linear layers, softmax(q@kᵀ/√d + mask shift)@v, an output Linear.
    ``shift`` is 0 for attended keys and the dtype's lowest value for padding, [N, 1, 1, T]."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (layer(x).reshape(n, t, self.heads, d // self.heads).transpose(1, 2)
                   for layer in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) * self.scale + shift
        y = self.dropout(scores.softmax(dim=-1)) @ v
        return self.out(y.transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Post-LN encoder block: x = LN(x + attention(x)), then x = LN(x + MLP(x)) with MLP = Linear, GELU, Linear."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, shift)))
        return self.norm2(x + self.dropout(self.mlp(x)))


class TextClassifier(nn.Module):
    """BERT-style classifier on token ids (see the module docstring); ``forward(input_ids, attention_mask)`` gives
    logits [N, classes]. :meth:`from_embeddings` runs it from the embedding output on, where relevance is taken."""

    def __init__(self, vocab_size: int, *, seq_len: int = SEQ_LEN, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_dim: int = 128, num_classes: int = len(LABELS), dropout: float = 0.1) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def from_embeddings(self, embedded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits from the token embeddings [N, T, D] (the output of the embedding lookup)."""
        shift = (1.0 - attention_mask[:, None, None, :].to(embedded.dtype)) * torch.finfo(embedded.dtype).min
        x = self.dropout(self.norm(embedded + self.positions))
        for block in self.blocks:
            x = block(x, shift)
        return self.head(x[:, 0])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.tokens(input_ids), attention_mask)


class _Packed(nn.Module):
    """``model`` on ids and mask stacked as [N, 2, T], the one-tensor batches :func:`fit` feeds."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.model(packed[:, 0], packed[:, 1])


def build(vocab_size: int, settings: TrainSettings) -> TextClassifier:
    """An untrained :class:`TextClassifier` shaped by ``settings``."""
    return TextClassifier(vocab_size, seq_len=settings.seq_len, dim=settings.dim, depth=settings.depth,
                          heads=settings.heads, mlp_dim=settings.mlp_dim, dropout=settings.dropout)


def train(ids: np.ndarray, mask: np.ndarray, labels: np.ndarray, vocab_size: int, mask_id: int,
          settings: TrainSettings) -> TextClassifier:
    """Train a :class:`TextClassifier` deterministically from ``settings.seed``; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = build(vocab_size, settings)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(ids) // settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, settings.warmup_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (step + 1) / warmup if step < warmup
        else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))))

    def mask_tokens(batch: torch.Tensor, _shift: int, generator: torch.Generator) -> torch.Tensor:
        real = batch[:, 1].clone()
        real[:, 0] = 0  # [CLS]
        real[torch.arange(len(batch)), batch[:, 1].sum(1) - 1] = 0  # [SEP]
        hit = (torch.rand(real.shape, generator=generator) < settings.mask_share) & (real == 1)
        out = batch.clone()
        out[:, 0][hit] = mask_id
        return out

    packed = np.stack([ids, mask], axis=1)
    fit(_Packed(model), opt, sched, packed, labels, settings, gen, mask_tokens)
    return model.eval()


def predict(model: TextClassifier, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Logits float32 [N, classes]."""
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


# --- export -------------------------------------------------------------------------------------------------------

def export(model: TextClassifier, path: Path, metadata: dict[str, str], description: str) -> None:
    """Legacy (TorchScript) export, opset 17, batch axis dynamic, with ``metadata`` in the model's metadata."""
    import onnx

    ids = torch.zeros((1, SEQ_LEN), dtype=torch.int64)
    axes = {name: {0: "batch"} for name in ("input_ids", "attention_mask", "logits")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # choosing the legacy exporter is deliberate here
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = description
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def onnx_logits(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Logits of the exported model under ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def pick_examples(logits: np.ndarray, test_pairs: list[tuple[str, int]]) -> list[str]:
    """Per topic, in topic order, the held-out plain-prose sentence (:data:`EXAMPLE_WORDS`) that the model
    classifies correctly with the largest logit margin."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    labels = np.array([k for _, k in test_pairs])
    low, high = EXAMPLE_WORDS
    short = np.array([low <= len(s.split()) <= high and all(w.rstrip(".,;:").isalpha() for w in s.split())
                      for s, _ in test_pairs])
    margin = np.where((logits.argmax(1) == labels) & short, top2[:, 1] - top2[:, 0], -np.inf)
    return [test_pairs[int(np.argmax(np.where(labels == k, margin, -np.inf)))][0] for k in range(len(LABELS))]


def publish(model: TextClassifier, tokenizer: Any, settings: TrainSettings, *, data: dict, accuracy: dict,
            seconds: float, threads: int, test: tuple[np.ndarray, np.ndarray], examples: list[str]) -> None:
    """Write the tokenizer, the ONNX model (checked against torch on the test split) and the metadata JSON; print a
    one-line summary."""
    tokenizer.save(str(TOKENIZER_PATH))
    pad_id, mask_id = tokenizer.token_to_id("[PAD]"), tokenizer.token_to_id("[MASK]")
    description = (f"TextClassifier (graphs/train_text_classifier.py): BERT-style, {settings.depth} post-LN blocks, "
                   f"{settings.heads} heads, dim {settings.dim}; topic of a Python docstring sentence")
    export(model, ONNX_PATH, {"explainer.labels": json.dumps(list(LABELS)), "pad_token_id": str(pad_id),
                              "mask_token_id": str(mask_id)},
           description)
    diff = float(np.abs(onnx_logits(ONNX_PATH, *test) - predict(model, *test)).max())
    ids, mask = encode(tokenizer, examples, settings.seq_len)
    low, high = EXAMPLE_WORDS
    logits = onnx_logits(ONNX_PATH, ids, mask)
    meta = {
        "model": description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx": {
            "file": ONNX_PATH.name, "exporter": "torch.onnx legacy (TorchScript)", "opset": OPSET,
            "inputs": [{"name": "input_ids", "shape": ["batch", SEQ_LEN], "dtype": "int64"},
                       {"name": "attention_mask", "shape": ["batch", SEQ_LEN], "dtype": "int64",
                        "meaning": "1 for a real token, 0 for padding"}],
            "output": {"name": "logits", "shape": ["batch", len(LABELS)], "meaning": "unnormalised topic scores"},
            "metadata": {"explainer.labels": list(LABELS), "pad_token_id": pad_id, "mask_token_id": mask_id},
            "max_abs_diff_vs_torch": diff, "bytes": ONNX_PATH.stat().st_size,
        },
        "tokenizer": {"file": TOKENIZER_PATH.name, "kind": "WordPiece, lower-casing, [CLS] $A [SEP]; vocabulary: the "
                      f"training split's characters and its words seen at least {settings.min_frequency} times",
                      "vocab_size": tokenizer.get_vocab_size(), "special_tokens": list(SPECIAL_TOKENS),
                      "bytes": TOKENIZER_PATH.stat().st_size},
        "labels": list(LABELS),
        "accuracy": accuracy,
        "training": {**asdict(settings), "seconds": round(seconds, 1), "threads": threads,
                     "torch": torch.__version__},
        "data": data,
        "examples": {"chosen": f"per topic, the correctly classified held-out sentence of {low} to {high} words, "
                               "each of letters only, with the largest logit margin",
                     "sentences": [{"text": text, "label": LABELS[k], "predicted": LABELS[int(np.argmax(row))],
                                    "logits": [round(float(v), 4) for v in row]}
                                   for k, (text, row) in enumerate(zip(examples, logits))]},
    }
    META_PATH.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"trained in {seconds:.1f} s: train acc {accuracy['train']:.4f}, test acc {accuracy['test']:.4f}; "
          f"wrote {ONNX_PATH} ({ONNX_PATH.stat().st_size} bytes), ONNX vs torch max |diff| {diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    """Train the tokenizer and the network, evaluate, export and write metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for reproducibility)")
    parser.add_argument("--figure-only", action="store_true", help=f"only redraw {FIGURE_PATH.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if args.figure_only:
        figure()
        return 0
    torch.set_num_threads(args.threads)
    settings = TrainSettings(seed=args.seed, epochs=args.epochs)

    pairs = load_sentences()
    train_pairs, test_pairs = split(pairs, settings.test_every)
    tokenizer = train_tokenizer([s for s, _ in train_pairs], settings)
    x_train, x_test = (encode(tokenizer, [s for s, _ in part], settings.seq_len) for part in (train_pairs, test_pairs))
    y_train, y_test = (np.array([k for _, k in part], np.int64) for part in (train_pairs, test_pairs))
    start = time.perf_counter()
    model = train(*x_train, y_train, tokenizer.get_vocab_size(), tokenizer.token_to_id("[MASK]"), settings)
    seconds = time.perf_counter() - start
    test_pred, train_pred = predict(model, *x_test).argmax(1), predict(model, *x_train).argmax(1)
    per_class = {name: float(np.mean(test_pred[y_test == k] == k)) for k, name in enumerate(LABELS)}
    accuracy = {"test": float(np.mean(test_pred == y_test)), "train": float(np.mean(train_pred == y_train)),
                "test_per_topic": per_class, "test_balanced": float(np.mean(list(per_class.values()))),
                "n_test": len(y_test), "n_train": len(y_train)}
    data = {"source": DATA_SOURCE, "licence": DATA_LICENCE, "python": platform.python_version(),
            "topics": {name: list(mods) for name, mods in TOPICS.items()},
            "sentences": len(pairs), "per_topic": {name: int(sum(k == i for _, k in pairs))
                                                   for i, name in enumerate(LABELS)},
            "split": f"held out when SHA-256(sentence) % {settings.test_every} == 0",
            "fingerprint_sha256": fingerprint(pairs),
            "truncated_sentences": int(sum(1 for s, _ in pairs if len(tokenizer.encode(s).ids) > settings.seq_len))}
    publish(model, tokenizer, settings, data=data, accuracy=accuracy, seconds=seconds, threads=args.threads,
            test=x_test, examples=pick_examples(predict(model, *x_test), test_pairs))
    figure()
    return 0


def figure(path: Path = FIGURE_PATH) -> Path:
    """Explain the example sentences with the shipped model (attn-lrp) and draw their tokens, coloured by relevance,
    into ``path`` (returned)."""
    from explainer import Explainer
    from explainer.pictures.tokens import plot_token_rows
    from explainer.text import encode_texts, load_tokenizer, merge_pieces, special_tokens

    tokenizer = load_tokenizer(TOKENIZER_PATH)
    examples = [e["text"] for e in json.loads(META_PATH.read_text())["examples"]["sentences"]]
    encoded = encode_texts(tokenizer, examples, SEQ_LEN, pad_id=tokenizer.token_to_id("[PAD]"))
    ex = Explainer(str(ONNX_PATH), cache=False)
    e = ex.explain(encoded.feeds(ex.input_name, ex.fixed_inputs))
    rows = []
    for i in range(len(examples)):
        n = encoded.lengths[i]
        words, values = merge_pieces(encoded.tokens[i][:n], e.relevance_map()[i, :n], special_tokens(tokenizer))
        rows.append((words, values, f"{LABELS[int(e.target[i])]} (class {int(e.target[i])})"))
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_token_rows(rows, path, title=f"{ONNX_PATH.name}, {ex.method}: each word's relevance for the topic")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
