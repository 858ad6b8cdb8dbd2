"""One self-contained HTML page from result folders: pictures inlined as ``data:`` URIs, CSS in the page, no script.

The page loads nothing from anywhere (its Content-Security-Policy allows only inline images and the inline style),
so it opens from a CI artefact, a mail attachment or a file share alike. Each image's pictures are lazy-loaded
thumbnails (see :mod:`explainer.report.results`) in a responsive grid that reads on a laptop screen; every text
that comes from a file or a model (names, labels, folder paths, JSON values) is HTML-escaped.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from explainer.api import LOW_CONSERVATION
from explainer.report.results import Explained, Picture, Section, number, read_section, result_files

STYLE = """
:root{--fg:#1d2430;--muted:#5b6472;--line:#d9dee5;--bg:#f4f6f8;--card:#fff;--ok:#17612f;--okbg:#e3f5e8;
--bad:#9b1c1c;--badbg:#fde8e8}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:var(--card);border-bottom:1px solid var(--line);padding:14px 24px}
header h1{font-size:20px;margin:0 0 4px}
header p{margin:0;color:var(--muted)}
nav a{margin-right:14px}
main{max-width:1440px;margin:0 auto;padding:8px 24px 40px}
h2{font-size:18px;margin:28px 0 4px}
h2 small,.muted{color:var(--muted);font-weight:normal}
h3{font-size:15px;margin:0 0 4px;overflow-wrap:anywhere}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:12px 0}
.split{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;align-items:start}
@media (max-width:900px){.split{grid-template-columns:minmax(0,1fr)}}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:14px;margin-top:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}
.maps{display:grid;grid-template-columns:repeat(auto-fit,minmax(70px,1fr));gap:6px;margin:8px 0}
figure{margin:0}
img{display:block;width:100%;height:auto;border-radius:4px;background:#e9ecef}
img.pixelated{image-rendering:pixelated}
figcaption{font-size:12px;color:var(--muted);text-align:center;line-height:1.25;margin-top:2px}
.plot img{max-width:600px;margin:0 auto}
p.meta{margin:0;font-size:13px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child,th.name,td.name{text-align:left;white-space:normal;overflow-wrap:anywhere}
th{color:var(--muted);font-weight:600}
tr.explained td{font-weight:600}
tr.audited td{background:#fff8e1}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:700;letter-spacing:.03em}
.passed{background:var(--okbg);color:var(--ok)}
.failed{background:var(--badbg);color:var(--bad)}
.low{color:var(--bad);font-weight:600}
.legend{display:inline-block;width:120px;height:10px;vertical-align:middle;border-radius:2px;
background:linear-gradient(90deg,#00004c,#0000ff,#fff,#ff0000,#800000)}
ul.reasons{margin:6px 0 0;padding-left:20px;color:var(--bad)}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def build_report(folders: Sequence[str | os.PathLike], *, labels: str | os.PathLike | None = None, top: int = 5,
                 title: str = "explainer report", progress: Callable[[], None] | None = None) -> str:
    """The HTML page of the result ``folders`` (each written by explain, evaluate or audit), in the order given."""
    sections = [read_section(folder, labels=labels, top=top, progress=progress) for folder in folders]
    return render(sections, title=title)


def render(sections: Sequence[Section], *, title: str = "explainer report") -> str:
    """The HTML page of already-read :class:`Section` objects."""
    images = sum(len(s.explained) for s in sections)
    summary = [f"{images} explained image{'s' if images != 1 else ''}"] if images else []
    summary += [what for what, present in (("an evaluation", any(s.evaluation for s in sections)),
                                           ("an audit", any(s.audit for s in sections))) if present]
    nav = "".join(f'<a href="#s{i}">{escape(_folder_name(s.folder))}</a>' for i, s in enumerate(sections, 1))
    body = "\n".join(_section(s, f"s{i}") for i, s in enumerate(sections, 1))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<header><h1>{escape(title)}</h1><p>{escape(', '.join(summary))} from {len(sections)} folder"
            f"{'s' if len(sections) != 1 else ''}</p><nav>{nav}</nav></header>\n"
            f"<main>\n{body}\n</main>\n</body>\n</html>\n")


def _folder_name(folder: Path) -> str:
    return folder.name or str(folder)


def _section(section: Section, anchor: str) -> str:
    name, path = _folder_name(section.folder), str(section.folder)
    where = f" <small>{escape(path)}</small>" if path != name else ""
    parts = [f'<section id="{anchor}"><h2>{escape(name)}{where}</h2>']
    if section.audit is not None:
        parts.append(_audit(section.audit, section.audit_evaluation or {}))
    if section.evaluation is not None:
        parts.append(_evaluation(section.evaluation, section.curves))
    if section.explained:
        parts.append(_explained(section.explained))
    parts.append("</section>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------- explanations
def _explained(images: Sequence[Explained]) -> str:
    conserved = sorted(e.conservation for e in images if e.conservation is not None)
    note = ""
    if conserved:
        low = sum(_vanished(e) for e in images)
        seed = "the logit" if all(e.seed in (None, "logit") for e in images) else "the seed"
        note = (f"; relevance reaching the input: median {_percent(conserved[len(conserved) // 2])} of {seed}"
                + (f", <span class=\"low\">under {LOW_CONSERVATION:.0%} for {low}</span>" if low else ""))
    head = (f'<div class="panel"><p class="meta">{len(images)} explained image{"s" if len(images) != 1 else ""}'
            f'{note}. Relevance: <span class="legend"></span> blue negative, white 0, red positive.</p></div>')
    return head + '\n<div class="grid explanations">\n' + "\n".join(_card(e) for e in images) + "\n</div>"


def _card(e: Explained) -> str:
    figures = "".join(_figure(p) for p in e.pictures) or '<p class="muted">no pictures in this folder</p>'
    meta = [f"explained: <b>{_class(e.target_name, e.target)}</b>, logit {e.target_logit:.3f}"]
    seed = "the logit" if e.seed in (None, "logit") else "the seed"
    if e.conservation is not None:
        css = ' class="low"' if _vanished(e) else ""
        meta.append(f'<span{css}>relevance at the input: {_percent(e.conservation)} of {seed}</span>')
    meta += [f"kept by {escape(label)}: {value:.4g}" + (f" ({_percent(value / e.seed_value)} of {seed})"
                                                        if e.seed_value else "") for label, value in e.absorbed]
    if e.seed is not None:
        meta.append(f"seed: {escape(e.seed)}")
    mark = ' class="explained"'
    rows = "".join(f'<tr{mark if idx == e.target else ""}><td>{rank}</td><td class="name">{_class(name, idx)}</td>'
                   f"<td>{logit:.3f}</td><td>{prob:.3f}</td></tr>"
                   for rank, (idx, name, logit, prob) in enumerate(e.top, 1))
    table = ('<table class="topk"><thead><tr><th>#</th><th class="name">class</th><th>logit</th><th>p</th></tr>'
             f"</thead><tbody>{rows}</tbody></table>")
    return (f'<article class="card"><h3>{escape(e.stem)}</h3><div class="maps">{figures}'
            f'</div><p class="meta">{"<br>".join(meta)}</p>{table}</article>')


def _vanished(e: Explained) -> bool:
    """Whether too little of the seed reached the input (the CLI's low-conservation warning, same threshold)."""
    return e.reached is not None and abs(e.reached) < LOW_CONSERVATION


def _class(name: str, index: int) -> str:
    """A class as shown: its name, with its index when the name is not just the index."""
    return escape(name) if name == str(index) else f'{escape(name)} <span class="muted">({index})</span>'


def _figure(picture: Picture) -> str:
    """A lazy-loaded picture with its caption; small ones are scaled up as sharp pixels, not blurred."""
    pixelated = ' class="pixelated"' if max(picture.width, picture.height) < 128 else ""
    return (f'<figure><img src="{picture.uri}" width="{picture.width}" height="{picture.height}" loading="lazy" '
            f'decoding="async"{pixelated} alt="{escape(picture.caption)}"><figcaption>{escape(picture.caption)}'
            "</figcaption></figure>")


# ----------------------------------------------------------------------------------------- evaluation and audit
def _evaluation(report: Mapping[str, Any], curves: Picture | None) -> str:
    settings = report.get("settings") if isinstance(report.get("settings"), Mapping) else {}
    plot = f'<div class="plot">{_figure(curves)}</div>' if curves is not None else ""
    return (f'<div class="panel"><h3>Region perturbation (AOPC)</h3><div class="split"><div>'
            f"{_aopc_table(report['methods'])}{_settings(settings)}</div>{plot}</div></div>")


def _aopc_table(methods: Mapping[str, Any], audited: str | None = None) -> str:
    random = methods.get("random")
    random_aopc = number(random.get("aopc")) if isinstance(random, Mapping) else None
    rows = []
    for name, entry in methods.items():
        entry = entry if isinstance(entry, Mapping) else {}
        aopc = number(entry.get("aopc"))
        gain = None if name == "random" or aopc is None or random_aopc is None else aopc - random_aopc
        complexity = entry.get("complexity") if isinstance(entry.get("complexity"), Mapping) else {}
        mark = ' class="audited"' if name == audited else ""
        rows.append(f'<tr data-method="{escape(str(name))}"{mark}><td>{escape(str(name))}</td><td>{_num(aopc)}</td>'
                    f'<td>{_num(entry.get("abpc"))}</td><td>{_num(gain, signed=True)}</td>'
                    f'<td>{_num(complexity.get("png_bytes"), digits=0)}</td>'
                    f'<td>{_num(complexity.get("entropy"), digits=3)}</td></tr>')
    return ('<table class="aopc"><thead><tr><th>method</th><th>AOPC</th><th>ABPC</th><th>vs random</th>'
            f'<th>PNG bytes</th><th>entropy</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _settings(settings: Mapping[str, Any]) -> str:
    region, unit = settings.get("region"), settings.get("unit")  # unit: feature rows, signals, token ids
    shown = [f"L = {settings.get('steps')} steps",
             f"units: {unit}" if unit else f"{region}×{region} regions ({settings.get('grid')} grid)",
             f"perturbation {settings.get('perturb')}", f"{settings.get('images')} {'samples' if unit else 'images'}",
             f"{settings.get('repeats')} random repeats"]
    lines = [", ".join(str(s) for s in shown)]
    for key, what in (("aopc_definition", "AOPC"), ("score", "score"), ("replacement", "replaced by"),
                      ("model", "model")):
        if settings.get(key) is not None:
            lines.append(f"{what}: {settings[key]}")
    return '<p class="meta muted">' + "<br>".join(escape(line) for line in lines) + "</p>"


def _audit(audit: Mapping[str, Any], evaluation: Mapping[str, Any]) -> str:
    passed = audit.get("passed") is True
    method = str(audit.get("method"))
    gain, min_gain = number(audit.get("gain")), number(audit.get("min_gain"))
    lines = [f"method <b>{escape(method)}</b>: AOPC {_num(audit.get('aopc'))}, random {_num(audit.get('random_aopc'))}",
             f"gain against random <b>{_num(gain, signed=True)}</b> (required {_num(min_gain, signed=True)})"]
    if number(audit.get("baseline_aopc")) is not None:
        drop = number(audit.get("drop"))
        lines.append(f"against the baseline: AOPC {_num(audit.get('baseline_aopc'))}, change "
                     f"<b>{_num(None if drop is None else -drop, signed=True)}</b> (allowed drop "
                     f"{_num(audit.get('max_drop'))})")
    else:
        lines.append("no baseline given")
    reasons = audit.get("reasons") if isinstance(audit.get("reasons"), list) else []
    failed = ('<ul class="reasons">' + "".join(f"<li>{escape(str(r))}</li>" for r in reasons) + "</ul>"
              if reasons else "")
    methods = evaluation.get("methods") if isinstance(evaluation.get("methods"), Mapping) else {}
    settings = evaluation.get("settings") if isinstance(evaluation.get("settings"), Mapping) else {}
    table = _aopc_table(methods, audited=method) + _settings(settings) if methods else ""
    verdict = "passed" if passed else "failed"
    return (f'<div class="panel audit"><h3>Audit <span class="badge verdict {verdict}">{verdict.upper()}</span></h3>'
            f'<div class="split"><div><p class="meta">{"<br>".join(lines)}</p>{failed}</div><div>{table}</div></div>'
            "</div>")


def _num(value: Any, *, digits: int = 4, signed: bool = False) -> str:
    value = number(value)
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return f"{value:.1%}"


def input_files(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Every file :func:`build_report` reads from ``folders`` (so that the output can be checked against them)."""
    return [path for folder in folders for path in result_files(folder)]
