"""The self-contained HTML report: one file, figures embedded as base64, no external resources.

Layout: a header (profile, seed, the command that regenerates it), a summary table with one row
per claim (id, title, status, checks passed, independent checks passed / independent checks,
tolerance sources, run time), one section per claim (statement, parameters, a table of checks:
predicted, measured, difference, tolerance and its source, how each side was computed, whether
the check is independent, pass or fail; notes; figures), and the software versions used.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("forgetlab", "numpy", "scipy", "matplotlib", "pandas", "click", "rich", "torch")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #d0d0d0;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#0a6b1f;font-weight:600} .failed,.error{color:#b00020;font-weight:600}
.skipped{color:#8a6d00;font-weight:600}
.statement{background:#f7f7fb;border-left:4px solid #6b6bb3;padding:.5em .8em}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #e5e5e5}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;font-size:.85em}
.notes li{margin:.2em 0}
"""


def software_versions() -> dict[str, str]:
    """Python, the platform and the installed versions of the packages the report depends on."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(str(value))


def _status(status: str) -> str:
    return f'<span class="{status}">{status}</span>'


def _figure_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(path.stem)} (vector version: "
        f"{html.escape(path.with_suffix('.svg').name)})</figcaption></figure>"
    )


def _independence(check: dict[str, Any]) -> str:
    """"yes" for an independent check; otherwise why it does not count as verification."""
    if check["independent"]:
        return "yes"
    if "algebraic identity" in (check["predicted_by"], check["measured_by"]):
        return "no (identity)"
    return "no (consistency)"


def _checks_table(checks: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        diff = c["measured"] - c["predicted"] if isinstance(c["measured"], float) else ""
        rows.append(
            "<tr>"
            f"<td>{_fmt(c['name'])}</td><td class='num'>{_fmt(c['predicted'])}</td>"
            f"<td class='num'>{_fmt(c['measured'])}</td><td class='num'>{_fmt(diff)}</td>"
            f"<td class='num'>{_fmt(c['tolerance'])}</td><td>{_fmt(c['kind'])}</td>"
            f"<td>{_fmt(c['tolerance_source'])}</td>"
            f"<td>{_fmt(c['predicted_by'])}</td><td>{_fmt(c['measured_by'])}</td>"
            f"<td>{_independence(c)}</td>"
            f"<td>{_status('passed' if c['passed'] else 'failed')}</td></tr>"
        )
    head = (
        "<tr><th>check</th><th>predicted</th><th>measured</th>"
        "<th>difference</th><th>tolerance</th><th>kind</th><th>tolerance source</th>"
        "<th>predicted by</th><th>measured by</th><th>independent</th><th>result</th></tr>"
    )
    return f"<table class='checks'>{head}{''.join(rows)}</table>"


def _claim_section(claim: dict[str, Any], root: Path) -> str:
    cid = html.escape(claim["claim_id"])
    parts = [
        f'<section id="claim-{cid}"><h2>{cid}: {html.escape(claim["title"])} '
        f"&mdash; {_status(claim['status'])}</h2>",
        f'<p class="statement">{html.escape(claim["statement"])}</p>',
    ]
    if claim.get("error"):
        parts.append(f"<p class='error'>Error: {html.escape(claim['error'])}</p>")
    if claim["checks"]:
        parts.append(_checks_table(claim["checks"]))
    if claim["notes"]:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in claim["notes"])
        parts.append(f"<h3>Notes</h3><ul class='notes'>{items}</ul>")
    for rel in claim["figures"]:
        path = root / rel
        if path.suffix == ".png" and path.exists():
            parts.append(_figure_tag(path, f"{claim['claim_id']} figure {path.stem}"))
    params = json.dumps(claim["parameters"], indent=1, sort_keys=True)
    parts.append(f"<details><summary>Parameters</summary><pre>{html.escape(params)}</pre></details>")
    parts.append(f"<p>Run time: {claim['runtime_s']:.1f} s</p></section>")
    return "\n".join(parts)


def render_report(
    claims: Sequence[dict[str, Any]], root: Path, config: dict[str, Any], versions: dict[str, str]
) -> str:
    """The report as one HTML string; figure paths in ``claims`` are relative to ``root``."""
    counts = {s: sum(c["status"] == s for c in claims) for s in ("passed", "failed", "skipped",
                                                                  "error")}
    summary_rows = []
    for c in claims:
        n_ok = sum(ch["passed"] for ch in c["checks"])
        sources = ", ".join(c["tolerance_source"])
        summary_rows.append(
            f'<tr data-claim="{html.escape(c["claim_id"])}">'
            f'<td><a href="#claim-{html.escape(c["claim_id"])}">{html.escape(c["claim_id"])}</a>'
            f"</td><td>{html.escape(c['title'])}</td><td>{_status(c['status'])}</td>"
            f"<td class='num'>{n_ok}/{len(c['checks'])}</td>"
            f"<td class='num'>{c['independent_passed']}/{c['independent_checks']}</td>"
            f"<td>{html.escape(sources)}</td>"
            f"<td class='num'>{c['runtime_s']:.1f}</td></tr>"
        )
    summary = (
        "<table id='summary'><tr><th>claim</th><th>title</th><th>status</th>"
        "<th>checks passed</th><th>independent checks passed</th><th>tolerance sources</th>"
        "<th>time [s]</th></tr>"
        + "".join(summary_rows)
        + "</table>"
    )
    totals = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    versions_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in versions.items()
    )
    config_json = html.escape(json.dumps(config, indent=1, sort_keys=True))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            "<h1>forgetlab reproduction report</h1>",
            f"<p>Generated {generated}; profile <b>{html.escape(str(config.get('profile')))}</b>,"
            f" seed {html.escape(str(config.get('seed')))}. Result: {html.escape(totals)}.</p>",
            "<p>Each claim of the theory is checked by computing its prediction (closed form or "
            "exact population engine) and measuring the same quantity by simulation; a check "
            "passes when the two agree within a tolerance derived from the error of the method "
            "that produced them. Each check names how both sides were computed; only checks "
            "whose two sides share no computation beyond the problem definition count as "
            "independent (verification). Algebraic identities and consistency checks of the "
            "engine against itself are shown but not counted.</p>",
            "<h2>Summary</h2>",
            summary,
            *(_claim_section(c, root) for c in claims),
            "<h2>Regenerate</h2>",
            f"<pre>{html.escape(str(config.get('command', '')))}</pre>",
            f"<details open><summary>Configuration</summary><pre>{config_json}</pre></details>",
            f"<table id='versions'><tr><th>software</th><th>version</th></tr>{versions_rows}"
            "</table>",
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>forgetlab reproduction report</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(
    claims: Sequence[dict[str, Any]], root: Path, config: dict[str, Any]
) -> Path:
    """Write ``root/report.html`` from the claim dicts and return its path."""
    path = root / "report.html"
    path.write_text(render_report(claims, root, config, software_versions()), encoding="utf-8")
    return path
