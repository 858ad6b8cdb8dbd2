"""`explainer audit MODEL IMAGE|DIR ... --method M --min-gain G [--baseline prev.json --max-drop D]` for CI.

Exit 0 when the method beats the random baseline by at least G (and has not dropped more than D below the stored
baseline), 1 when the audit fails, 2 on bad input. Writes report.json and report.md into --report.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from explainer.cli.common import add_model_options, output_dir
from explainer.cli.evaluate import add_protocol_options, run_evaluation
from explainer.errors import InputError
from explainer.evaluation.audit import audit_decision, write_audit_report
from explainer.lrp.composites import METHODS

HELP = "CI audit: fail (exit 1) when a method's AOPC does not beat random by --min-gain or drops below a baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p, method=False)
    p.add_argument("--method", default="epsilon-plus-flat", choices=list(METHODS), help="method under audit")
    p.add_argument("--min-gain", type=float, default=0.0, help="required AOPC(method) − AOPC(random) (default 0)")
    p.add_argument("--baseline", help="a previous report.json (or aopc.json) to compare against")
    p.add_argument("--max-drop", type=float, help="largest allowed AOPC drop from the baseline (default 0)")
    p.add_argument("--report", default="audit", help="folder for report.json and report.md (default ./audit)")
    add_protocol_options(p)


def load_baseline(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"baseline '{path}': no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"baseline '{path}': not a readable JSON report ({exc})") from None
    if isinstance(data, dict) and "evaluation" in data:
        data = data["evaluation"]
    if not isinstance(data, dict) or "methods" not in data:
        raise InputError(f"baseline '{path}': expected a report.json or aopc.json written by explainer")
    return data


def run(args: argparse.Namespace) -> int:
    if args.max_drop is not None and not args.baseline:
        raise InputError("--max-drop needs --baseline")
    baseline = load_baseline(args.baseline) if args.baseline else None
    out = output_dir(args.report)
    report = run_evaluation(args, [args.method], ("morf",))
    outcome = audit_decision(report, args.method, min_gain=args.min_gain, baseline=baseline, max_drop=args.max_drop)
    json_path, md_path = write_audit_report(outcome, report, out)
    verdict = "PASSED" if outcome.passed else "FAILED"
    print(f"audit {verdict}: AOPC({args.method}) = {outcome.aopc:.4f}, random = {outcome.random_aopc:.4f}, "
          f"gain {outcome.gain:+.4f} (required {args.min_gain:+.4f})")
    for reason in outcome.reasons:
        print(f"  - {reason}")
    print(f"wrote {json_path} and {md_path}")
    return 0 if outcome.passed else 1
