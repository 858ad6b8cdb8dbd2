"""The README's pictures of the shipped models, made from the shipped files only.

    python -m tools.figures [--out docs/img]

``digits_cnn_vit.png``: for one test digit per class
(``examples/digit_<k>.png``), the digit, the digits CNN's epsilon-plus-flat heatmap, the digits ViT's AttnLRP (ε,
then γ = 0.25 on its linear layers) and CP-LRP heatmaps and the SR map of its AttnLRP relevance (|R|), each enlarged
4× with nearest-neighbour sampling so that the 32×32 pixels stay visible. It also prints, per model and method, the
mean share of the target logit that reaches the pixels and what the ViT's constant inputs (class token, position
embedding) keep.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from explainer import Explainer
from explainer.images.io import load_image
from explainer.pictures.heatmaps import grid, heatmap, sr_image
from explainer.sr.sr_map import sr_map

REPO = Path(__file__).resolve().parents[1]
SCALE = 4


def _big(image: Image.Image) -> Image.Image:
    return image.resize((image.width * SCALE, image.height * SCALE), Image.NEAREST)


def digits_figure(out: Path) -> Path:
    """The CNN/ViT comparison on the ten example digits (see the module docstring)."""
    paths = [REPO / "examples" / f"digit_{k}.png" for k in range(10)]
    x = np.stack([load_image(p, channels=1).transpose(2, 0, 1).astype(np.float32) / 255.0 for p in paths])
    cnn = Explainer(REPO / "graphs" / "digits_cnn.onnx", "epsilon-plus-flat")
    vit = Explainer(REPO / "graphs" / "digits_vit.onnx", "attn-lrp")
    results = {"CNN epsilon-plus-flat": cnn.explain(x), "ViT attn-lrp": vit.explain(x),
               "ViT attn-lrp γ=0.25": vit.with_method("attn-lrp", gamma=0.25).explain(x),
               "ViT cp-lrp": vit.with_method("cp-lrp").explain(x)}
    for name, e in results.items():
        kept = ", ".join(f"{label} {np.mean(v / e.logits[np.arange(10), e.target]):.1%}"
                         for label, v in e.absorbed.items())
        print(f"{name}: relevance at the pixels {np.mean(e.conservation):.1%} of the logit on average"
              + (f"; kept by constants: {kept}" if kept else ""))
    cells = []
    for i in range(10):
        digit = Image.fromarray((x[i, 0] * 255).astype(np.uint8)).convert("RGB")
        maps = [e.relevance_map()[i] for e in results.values()]
        sr = sr_map(np.abs(maps[1]))
        cells += [_big(digit)] + [_big(heatmap(m)) for m in maps] + [_big(sr_image(sr))]
    target = out / "digits_cnn_vit.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    grid(cells, cols=6, pad=4).save(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    print(f"wrote {digits_figure(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
