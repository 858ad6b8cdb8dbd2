"""Seeded text-classifier reference networks with token-id inputs, their ONNX exports, and the torch references
their explanations are checked against (no downloads).

- :func:`tiny_bert`: ``transformers``' ``BertForSequenceClassification`` (the real architecture: word, position and
  token-type embeddings, post-LN encoder layers with an attention mask, pooler with tanh, classifier) with a small
  config and seeded random weights; ``bias_free`` zeroes every bias, LayerNorm shift, position and token-type
  embedding, so that relevance has nowhere else to go;
- :class:`BagOfEmbeddings`: Embedding, masked mean over tokens, ReLU MLP (no transformer ops);

References, in float64 on a copy of the module: :func:`bert_gradient` (autograd of the target logit with respect to
the word embeddings, via ``inputs_embeds``) and :func:`bert_lxt_relevance` (AttnLRP or CP-LRP by LXT's explicit
functional API on the same weights, the forward pass checked against the module's own).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

VOCAB, SEQ, CLASSES = 50, 12, 3
LXT_EPSILON = 1e-6
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def tiny_bert(seed: int = 0, *, bias_free: bool = False) -> nn.Module:
    """A 2-layer, 4-head, width-32 BERT classifier with seeded weights (LayerNorm scales and shifts randomised
    too, so that they matter)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=SEQ, num_labels=CLASSES,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")
    model = BertForSequenceClassification(config).eval()
    return randomise(model, seed, bias_free=bias_free)


def randomise(model: nn.Module, seed: int, *, bias_free: bool = False) -> nn.Module:
    """``model`` with seeded weights large enough to matter: matrices N(0, 0.3²), LayerNorm scales 1 + N(0, 0.2²),
    other vectors N(0, 0.1²); ``bias_free`` zeroes biases and position and token-type embeddings."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=generator))
            elif p.ndim == 2:
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            if bias_free and (name.endswith("bias") or "position_embeddings" in name or "token_type" in name):
                p.zero_()
    return model.eval().requires_grad_(False)


def hf_classifier(kind: str, seed: int = 0) -> nn.Module:
    """A 2-layer ``transformers`` sequence classifier of architecture ``kind`` (distilbert, roberta, albert,
    electra) with seeded weights (:func:`randomise`), vocabulary ``VOCAB``, ``CLASSES`` labels, no dropout."""
    import transformers as hf

    torch.manual_seed(seed)
    common = {"vocab_size": VOCAB, "num_labels": CLASSES, "max_position_embeddings": 2 * SEQ + 4}
    bert_like = {**common, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 64, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                 "attn_implementation": "eager"}
    configs = {
        "distilbert": lambda: hf.DistilBertForSequenceClassification(hf.DistilBertConfig(
            **common, dim=32, n_layers=2, n_heads=4, hidden_dim=64, dropout=0.0, attention_dropout=0.0,
            seq_classif_dropout=0.0, attn_implementation="eager")),
        "roberta": lambda: hf.RobertaForSequenceClassification(hf.RobertaConfig(**bert_like, pad_token_id=1)),
        "albert": lambda: hf.AlbertForSequenceClassification(hf.AlbertConfig(
            **bert_like, embedding_size=16, classifier_dropout_prob=0.0)),
        "electra": lambda: hf.ElectraForSequenceClassification(hf.ElectraConfig(**bert_like, embedding_size=16)),
    }
    return randomise(configs[kind](), seed)


class BagOfEmbeddings(nn.Module):
    """Embedding, mean over the unmasked tokens, ReLU MLP (bias-free with ``bias=False``)."""

    def __init__(self, seed: int = 0, bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, 16)
        self.fc1, self.fc2 = nn.Linear(16, 24, bias=bias), nn.Linear(24, CLASSES, bias=bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return self.fc2(torch.relu(self.fc1(pooled)))


def token_batch(n: int = 3, seed: int = 1) -> dict[str, np.ndarray]:
    """Token ids, an attention mask with padding at the end of some rows (padding ids 0), token types 0/1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int64)
    mask = np.ones((n, SEQ), np.int64)
    for i in range(1, n):
        mask[i, SEQ - 3 * i:] = 0
    ids[mask == 0] = 0
    types = np.zeros((n, SEQ), np.int64)
    types[:, SEQ // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def export_text_model(model: nn.Module, path: Path, exporter: str, names: list[str]) -> Path:
    """``model`` exported with inputs ``names`` (int64 [N, SEQ]; dynamic batch) and output "logits"."""
    batch = token_batch(2)
    args = tuple(torch.from_numpy(batch[name]) for name in names)
    if exporter == "legacy":
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["logits"], dynamo=False,
                          opset_version=17, dynamic_axes={**{n: {0: "N"} for n in names}, "logits": {0: "N"}})
    else:
        n = torch.export.Dim("N", min=1)
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["logits"], dynamo=True,
                          dynamic_shapes=tuple({0: n} for _ in names))
    return path


def _bert64(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval().requires_grad_(False)


def _tensors(batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(batch[name]) for name in INPUT_NAMES)


def bert_logits(model: nn.Module, batch: dict[str, np.ndarray]) -> np.ndarray:
    ids, mask, types = _tensors(batch)
    with torch.no_grad():
        return _bert64(model)(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()


def bert_gradient(model: nn.Module, batch: dict[str, np.ndarray], target: np.ndarray) -> np.ndarray:
    """∂ logit[target] / ∂ word embeddings [N, T, D], by autograd in float64."""
    module = _bert64(model)
    ids, mask, types = _tensors(batch)
    emb = module.bert.embeddings.word_embeddings(ids).requires_grad_(True)
    logits = module(inputs_embeds=emb, attention_mask=mask, token_type_ids=types).logits
    logits.gather(1, torch.as_tensor(target).reshape(-1, 1)).sum().backward()
    return emb.grad.numpy()


def bert_lxt_relevance(model: nn.Module, batch: dict[str, np.ndarray], target: np.ndarray, *,
                       cp: bool = False) -> np.ndarray:
    """Relevance at the word embeddings [N, T, D] of each sample's ``target`` logit under AttnLRP (``cp=False``) or
    CP-LRP, by LXT in float64: ε-rule on every Linear and sum (embeddings, the attention mask's additive bias,
    residuals), LXT's LayerNorm and softmax rules, uniform rule on both attention products, identity on GELU and the
    pooler's tanh and on multiplication by the constant scale."""
    from lxt.explicit import functional as lf
    from lxt.explicit import rules

    module = _bert64(model)
    ids, mask, types = _tensors(batch)
    emb = module.bert.embeddings
    words = emb.word_embeddings(ids).requires_grad_(True)
    n, t = ids.shape
    h = lf.add2(lf.add2(words, emb.token_type_embeddings(types)),
                emb.position_embeddings(torch.arange(t)).expand(n, t, -1))
    h = lf.layer_norm(h, emb.LayerNorm.weight, emb.LayerNorm.bias, emb.LayerNorm.eps)
    bias = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float32).min
    for layer in module.bert.encoder.layer:
        att = layer.attention.self
        heads, size = att.num_attention_heads, att.attention_head_size
        q, k, v = (lf.linear_epsilon(h, lin.weight, lin.bias, LXT_EPSILON).reshape(n, t, heads, size).transpose(1, 2)
                   for lin in (att.query, att.key, att.value))
        if cp:
            with torch.no_grad():
                weights = torch.softmax(q @ k.transpose(-2, -1) / size ** 0.5 + bias, dim=-1)
            context = rules.epsilon_lrp(torch.matmul, LXT_EPSILON, weights, v)
        else:
            scores = lf.add2(lf.mul2(lf.matmul(q, k.transpose(-2, -1)), 1 / size ** 0.5), bias)
            context = lf.matmul(lf.softmax(scores, -1), v)
        context = context.transpose(1, 2).reshape(n, t, heads * size)
        out = layer.attention.output
        h = lf.layer_norm(lf.add2(lf.linear_epsilon(context, out.dense.weight, out.dense.bias, LXT_EPSILON), h),
                          out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps)
        inner = layer.intermediate.dense
        hidden = rules.identity(layer.intermediate.intermediate_act_fn,
                                lf.linear_epsilon(h, inner.weight, inner.bias, LXT_EPSILON))
        last = layer.output
        h = lf.layer_norm(lf.add2(lf.linear_epsilon(hidden, last.dense.weight, last.dense.bias, LXT_EPSILON), h),
                          last.LayerNorm.weight, last.LayerNorm.bias, last.LayerNorm.eps)
    pooler = module.bert.pooler.dense
    pooled = rules.identity(torch.tanh, lf.linear_epsilon(h[:, 0], pooler.weight, pooler.bias, LXT_EPSILON))
    logits = lf.linear_epsilon(pooled, module.classifier.weight, module.classifier.bias, LXT_EPSILON)
    with torch.no_grad():
        expected = module(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    if not torch.allclose(logits, expected, rtol=0, atol=1e-9 * float(expected.abs().max())):
        raise AssertionError(f"LXT's forward pass differs from the module's by {(logits - expected).abs().max():.3g}")
    chosen = logits.gather(1, torch.as_tensor(target).reshape(-1, 1))
    torch.autograd.backward(chosen, chosen.detach())
    return words.grad.numpy()
