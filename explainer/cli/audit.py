"""`explainer audit MODEL IMAGE|DIR ...|SAMPLES.npy --method M --min-gain G [--gate mean|lower-ci] [--baseline
prev.json --max-drop D]` for CI (a .npy: feature rows, 1-D signals or token ids; a model whose output is a map:
``--target``, ``--region X0 Y0 X1 Y1``, ``--mask``; all as in `explainer evaluate`).

Exit 0 when the method beats the random baseline by at least G (the mean gain, or with ``--gate lower-ci`` the lower
bound of its paired bootstrap confidence interval) and has not dropped more than D below the stored baseline, 1 when
the audit fails, 2 on bad input. Writes report.json and report.md into --report, from the per-image rows journaled
in rows.jsonl there (``--resume`` continues an interrupted audit).
"""
from __future__ import annotations

import argparse

from explainer.cli.common import add_model_options
from explainer.cli.evaluate import add_protocol_options, array_input, input_images, run_evaluation
from explainer.cli.outputs import OutputPlan
from explainer.errors import InputError
from explainer.evaluation.audit import (
    GATES,
    AuditOutcome,
    audit_decision,
    audit_report_files,
    check_audit_request,
    read_baseline,
)
from explainer.evaluation.rows import ROWS_FILE
from explainer.lrp.composites import AUTO, METHODS

HELP = "CI audit: fail (exit 1) when a method's AOPC does not beat random by --min-gain or drops below a baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "exit status: 0 the audit passed; 1 it failed; 2 bad input (checked before the evaluation runs)"
    add_model_options(p, method=False, seed_mode=True)
    p.add_argument("--method", choices=list(METHODS),
                   help="method under audit (default: epsilon-plus-flat) for images; for a .npy input the model's "
                        "default method (epsilon-plus for feature rows, attn-lrp for transformers)")
    p.add_argument("--min-gain", type=float, default=0.0, help="required AOPC(method) − AOPC(random) (default 0)")
    p.add_argument("--gate", choices=list(GATES), default="mean",
                   help="what must reach --min-gain: the mean gain over the images (default) or the lower bound of "
                        "its 95%% paired bootstrap confidence interval (lower-ci: a gain that may be noise fails)")
    p.add_argument("--baseline", help="a previous report.json (or aopc.json) to compare against (default: none)")
    p.add_argument("--max-drop", type=float, help="largest allowed AOPC drop from the baseline (default 0)")
    p.add_argument("--report", default="audit", help="folder for report.json and report.md (default ./audit)")
    add_protocol_options(p)


def run(args: argparse.Namespace) -> int:
    if args.max_drop is not None and not args.baseline:
        raise InputError("--max-drop needs --baseline")
    baseline = read_baseline(args.baseline) if args.baseline else None
    method = args.method or (AUTO if array_input(args) else "epsilon-plus-flat")
    request = dict(min_gain=args.min_gain, baseline=baseline, max_drop=args.max_drop, gate=args.gate)
    if method != AUTO:
        check_audit_request(method, **request)
    images = input_images(args)
    plan = OutputPlan(args.report, "--report")
    json_path, md_path, rows_path = plan.add("report.json"), plan.add("report.md"), plan.add(ROWS_FILE)
    plan.refuse_inputs([args.baseline, *images.paths, *args.manifest, args.mask], models=[args.model])
    report = run_evaluation(args, images, [method], ("morf",), rows=rows_path)
    if method == AUTO:
        method = next(name for name in report["methods"] if name != "random")
        check_audit_request(method, **request)
    outcome = audit_decision(report, method, **request)
    kept = f"the audit report was not written; the per-image rows are kept in {rows_path}: the same command with " \
           "--resume writes it without recomputing them"
    with plan.writing(kept=kept) as writer, writer.group() as files:
        audit_report_files(outcome, report, files)
    verdict = "PASSED" if outcome.passed else "FAILED"
    print(f"audit {verdict}: AOPC({method}) = {outcome.aopc:.4f}, random = {outcome.random_aopc:.4f}, "
          f"gain {outcome.gain:+.4f}{_interval(outcome)} (required {args.min_gain:+.4f} of the "
          f"{'lower bound' if args.gate == 'lower-ci' else 'mean'})")
    for reason in outcome.reasons:
        print(f"  - {reason}")
    print(f"wrote {json_path} and {md_path}")
    return 0 if outcome.passed else 1


def _interval(outcome: AuditOutcome) -> str:
    return "" if outcome.gain_ci is None else f" [{outcome.gain_ci[0]:+.4f}, {outcome.gain_ci[1]:+.4f}]"
