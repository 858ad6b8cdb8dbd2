"""Text classifiers of four more ``transformers`` architectures (seeded weights, no download), each from both
PyTorch exporters: DistilBERT (no token types), RoBERTa (position ids computed from the token ids and the padding
id), ALBERT (a factorised embedding projected to the hidden size, shared layers) and ELECTRA. For each: the logits of
a padded batch equal PyTorch's, the gradient with respect to the word embeddings equals autograd in float64, and
AttnLRP's relevance is finite and leaves padding without relevance."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from explainer import Explainer
from tests.support.text_models import INPUT_NAMES, export_text_model, hf_classifier, token_batch

KINDS = ["distilbert", "roberta", "albert", "electra"]


def _batch() -> dict[str, np.ndarray]:
    batch = {name: token_batch(3)[name] for name in INPUT_NAMES[:2]}
    batch["input_ids"] = np.where(batch["attention_mask"] == 1, np.maximum(batch["input_ids"], 2), 1)  # pad id 1
    return batch


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_and_attn_lrp_on_transformers_text_classifiers(tmp_path, kind, exporter):
    model = hf_classifier(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_text_model(model, tmp_path / f"{kind}.onnx", exporter, INPUT_NAMES[:2])
    batch = _batch()
    ids, mask = (torch.from_numpy(batch[name]) for name in INPUT_NAMES[:2])
    ex = Explainer(path, "gradient", cache=False)
    assert ex.input_name == "input_ids" and list(ex.fixed_inputs) == ["attention_mask"]
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        expected_logits = double(input_ids=ids, attention_mask=mask).logits.numpy()
    np.testing.assert_allclose(ex.forward(batch), expected_logits, rtol=1e-4, atol=1e-4 * np.abs(expected_logits).max())
    target = expected_logits.argmax(1)
    embeddings = double.get_input_embeddings()(ids).requires_grad_(True)
    logits = double(inputs_embeds=embeddings, attention_mask=mask).logits
    logits.gather(1, torch.from_numpy(target)[:, None]).sum().backward()
    expected = embeddings.grad.numpy()
    got = ex.explain(batch, target=target).relevance
    assert float(np.abs(got - expected).max()) <= 1e-4 * float(np.abs(expected).max())
    e = ex.with_method("attn-lrp").explain(batch, target=target)
    assert np.all(np.isfinite(e.relevance)) and np.all(e.relevance_map()[batch["attention_mask"] == 0] == 0)
