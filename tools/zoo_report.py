"""Print the model-zoo coverage table that the README carries.

One row per model (CNNs and, from ``tests/support/transformer_models.py``, ViTs, DeiT, MobileNetV3 and ConvNeXt
exported afresh): its ops, canonicalisation changes, logits and gradient against references, LRP-0 against
gradient×input (n/a, naming the ops, where it does not hold by design), and the methods that give finite relevance.
The checks live in :mod:`tests.support.zoo_check` (``tests/test_zoo.py`` asserts them); this script only prints
them.

    python -m tools.zoo_report [--models NAME ...] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tests.support.zoo_check import check, markdown, model_sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.zoo_report", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names (or prefixes, e.g. zoo/) to include; default all")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    sources = model_sources()
    names = [n for n in sources if not args.models or any(n == m or n.startswith(m) for m in args.models)]
    rows = []
    for name in names:
        row = check(name, sources[name])
        rows.append(row)
        why = "" if row.green else " " + (row.error or "; ".join(f"{m}: {e}" for m, e in row.methods_failed.items()))
        print(f"{name}: {'green' if row.green else 'RED'} ({row.build_s:.1f}s build){why}", file=sys.stderr, flush=True)
    table = markdown(rows)
    print("command: " + shlex.join(["python", "-m", "tools.zoo_report", *(sys.argv[1:] if argv is None else argv)]))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0 if all(r.green for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
