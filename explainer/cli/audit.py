"""`explainer audit MODEL IMAGE|DIR ... --method M --min-gain G [--baseline prev.json --max-drop D]` for CI.

Exit 0 when the method beats the random baseline by at least G (and has not dropped more than D below the stored
baseline), 1 when the audit fails, 2 on bad input. Writes report.json and report.md into --report.
"""
from __future__ import annotations

import argparse

from explainer.cli.common import add_model_options
from explainer.cli.evaluate import add_protocol_options, run_evaluation
from explainer.cli.outputs import OutputPlan
from explainer.errors import InputError
from explainer.evaluation.audit import audit_decision, audit_report_files, check_audit_request, read_baseline
from explainer.images.io import list_images
from explainer.lrp.composites import METHODS

HELP = "CI audit: fail (exit 1) when a method's AOPC does not beat random by --min-gain or drops below a baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "exit status: 0 the audit passed; 1 it failed; 2 bad input (checked before the evaluation runs)"
    add_model_options(p, method=False, seed_mode=True)
    p.add_argument("--method", default="epsilon-plus-flat", choices=list(METHODS),
                   help="method under audit (default: epsilon-plus-flat)")
    p.add_argument("--min-gain", type=float, default=0.0, help="required AOPC(method) − AOPC(random) (default 0)")
    p.add_argument("--baseline", help="a previous report.json (or aopc.json) to compare against (default: none)")
    p.add_argument("--max-drop", type=float, help="largest allowed AOPC drop from the baseline (default 0)")
    p.add_argument("--report", default="audit", help="folder for report.json and report.md (default ./audit)")
    add_protocol_options(p)


def run(args: argparse.Namespace) -> int:
    if args.max_drop is not None and not args.baseline:
        raise InputError("--max-drop needs --baseline")
    baseline = read_baseline(args.baseline) if args.baseline else None
    check_audit_request(args.method, min_gain=args.min_gain, baseline=baseline, max_drop=args.max_drop)
    paths = list_images(args.images)
    plan = OutputPlan(args.report, "--report")
    json_path, md_path = plan.add("report.json"), plan.add("report.md")
    plan.refuse_inputs([args.baseline, *paths], models=[args.model])
    report = run_evaluation(args, paths, [args.method], ("morf",))
    outcome = audit_decision(report, args.method, min_gain=args.min_gain, baseline=baseline, max_drop=args.max_drop)
    with plan.writing() as writer, writer.group() as files:
        audit_report_files(outcome, report, files)
    verdict = "PASSED" if outcome.passed else "FAILED"
    print(f"audit {verdict}: AOPC({args.method}) = {outcome.aopc:.4f}, random = {outcome.random_aopc:.4f}, "
          f"gain {outcome.gain:+.4f} (required {args.min_gain:+.4f})")
    for reason in outcome.reasons:
        print(f"  - {reason}")
    print(f"wrote {json_path} and {md_path}")
    return 0 if outcome.passed else 1
