"""`explainer report DIR... [-o report.html]`: one self-contained HTML page from explain/evaluate/audit folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from explainer.cli.common import positive_int
from explainer.cli.outputs import OutputPathError, OutputPlan

HELP = ("write one self-contained HTML page (pictures inlined, no network) from the folders that explain, evaluate "
        "and audit write")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "exit status: 0 the page was written; 2 bad input (an unreadable folder or file; nothing is written)"
    p.add_argument("folders", nargs="+", metavar="DIR", help="result folders of explain, evaluate or audit")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default ./report.html)")
    p.add_argument("--labels", help="class names, one per line (default: ImageNet names for 1000-class models, "
                                    "else class indices)")
    p.add_argument("--top", type=positive_int, default=5, help="how many top classes to list per image (default 5)")
    p.add_argument("--title", default="explainer report", help="the page's title (default 'explainer report')")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from explainer.report import build_report, input_files

    output = Path(args.output)
    if not args.output.strip() or not output.name or args.output.endswith(("/", "\\")):
        raise OutputPathError(f"-o {args.output!r}: expected the path of an .html file")
    plan = OutputPlan(str(output.parent), "-o")
    plan.add(output.name)
    inputs = input_files(args.folders)
    plan.refuse_inputs([args.labels, *inputs])
    images = sum(path.suffix == ".npz" for path in inputs)
    with tqdm(total=images, desc="reading", unit="image", disable=images < 50) as bar:
        page = build_report(args.folders, labels=args.labels, top=args.top, title=args.title, progress=bar.update)
    with plan.writing() as writer, writer.group() as files:
        files.path(output.name).write_text(page, encoding="utf-8")
    print(f"wrote {output} ({len(page.encode('utf-8')) / 2**20:.1f} MiB): {images} explained image(s) from "
          f"{len(args.folders)} folder(s)")
    return 0
