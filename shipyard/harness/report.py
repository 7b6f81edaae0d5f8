"""The report a release manager looks at: gate table, suites, latency and throughput charts,
failed cases. Plain HTML with inline SVG (no chart library, no network), one file."""

from __future__ import annotations

import html
from typing import Any

from shipyard.evidence import Verdict
from shipyard.harness.suites import SuiteResult
from shipyard.output import table

_CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.muted{color:#667}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde;padding:4px 8px;text-align:left}
th{background:#f3f4f8}.ok{color:#177245;font-weight:600}.bad{color:#b3261e;font-weight:600}
.badge{display:inline-block;padding:4px 12px;border-radius:12px;color:#fff;font-weight:700}
.pass{background:#177245}.fail{background:#b3261e}.charts{display:flex;gap:16px;flex-wrap:wrap}
code{background:#f3f4f8;padding:1px 4px;border-radius:3px}"""
_COLORS = {"p50_ms": "#4c78a8", "p95_ms": "#f58518", "p99_ms": "#e45756", "rps": "#54a24b", "users": "#b279a2",
           "offered_rps": "#4c78a8", "answered_rps": "#54a24b", "refused_rps": "#e45756"}
_PALETTE = ["#4c78a8", "#f58518", "#e45756", "#54a24b", "#b279a2", "#72b7b2"]


def _fmt(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def line_chart(title: str, rows: list[dict[str, float | None]], series: list[str], unit: str,
               x: str = "t", x_unit: str = "s") -> str:
    """A small line chart as SVG: `x` on the x axis (time by default), one polyline per series."""
    w, h, pad = 520, 220, 40
    points = [(r.get(x) or 0, r) for r in rows]
    if not points:
        return ""
    t_max = max(t for t, _ in points) or 1
    v_max = max((r.get(s) or 0) for _, r in points for s in series) or 1
    lines, legend = [], []
    for i, s in enumerate(series):
        coords = " ".join(f"{pad + (t / t_max) * (w - 2 * pad):.1f},{h - pad - ((r.get(s) or 0) / v_max) * (h - 2 * pad):.1f}"
                          for t, r in points if r.get(s) is not None)
        color = _COLORS.get(s, _PALETTE[i % len(_PALETTE)])
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        legend.append(f'<text x="{pad + i * 120}" y="16" fill="{color}" font-size="12">{html.escape(s)}</text>')
    axes = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#889"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#889"/>'
            f'<text x="{pad}" y="{h - 12}" font-size="11" fill="#667">0 {x_unit}</text>'
            f'<text x="{w - pad - 50}" y="{h - 12}" font-size="11" fill="#667">{t_max:.0f} {x_unit}</text>'
            f'<text x="2" y="{pad + 4}" font-size="11" fill="#667">{v_max:.0f}</text>'
            f'<text x="2" y="{h - pad}" font-size="11" fill="#667">0 {unit}</text>')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
            f'aria-label="{html.escape(title)}">{"".join(legend)}{axes}{"".join(lines)}</svg></figure>')


def render_html(verdict: Verdict, suites: list[SuiteResult]) -> str:
    ok = verdict.passed
    subject = " · ".join(f"{k}: <code>{html.escape(str(v))}</code>" for k, v in verdict.subject.items() if v)
    gate_rows = "".join(
        f"<tr><td>{g.suite}</td><td>{g.metric}</td><td>{'-' if g.min is None else _fmt(g.min)}</td>"
        f"<td>{'-' if g.max is None else _fmt(g.max)}</td>"
        f"<td>{_fmt(g.measured)}</td><td class=\"{'ok' if g.passed else 'bad'}\">{'pass' if g.passed else 'FAIL'}</td>"
        f"<td>{html.escape(g.reason)}</td></tr>" for g in verdict.gates)
    suite_rows = "".join(
        f"<tr><td>{s.name}</td><td class=\"{'ok' if s.status == 'passed' else 'bad'}\">{s.status}</td>"
        f"<td>{s.seconds:.1f} s</td><td>{html.escape(f'inconclusive: {s.inconclusive}' if s.inconclusive else ', '.join(f'{k}={_fmt(v)}' for k, v in s.metrics.items()))}</td></tr>"
        for s in verdict.suites)
    charts = []
    for s in suites:
        history = s.details.get("history")
        timeline = s.details.get("timeline")
        if timeline:  # the stress suite: offered open loop, so what was offered and what came back
            charts.append(line_chart(f"{s.name}: requests per second offered, answered and refused", timeline,
                                     ["offered_rps", "answered_rps", "refused_rps"], "req/s"))
            charts.append(line_chart(f"{s.name}: latency of answers, from when each request was due (ms)", timeline,
                                     ["p50_ms", "p95_ms", "p99_ms"], "ms"))
        if history:
            charts.append(line_chart(f"{s.name}: latency over time (ms)", history, ["p50_ms", "p95_ms", "p99_ms"], "ms"))
            charts.append(line_chart(f"{s.name}: throughput (req/s) and users", history, ["rps", "users"], ""))
        replicas = s.details.get("replicas")
        if replicas:
            charts.append(line_chart(f"{s.name}: replicas over time (ready, wanted by the autoscaler)", replicas,
                                     ["ready", "desired_by_hpa"], "pods"))
            charts.append(line_chart(f"{s.name}: CPU utilisation the autoscaler saw (% of requests)", replicas,
                                     ["cpu_pct"], "%"))
    failures = "".join(
        f"<tr><td>{s.name}</td><td>{html.escape(f['test'])}</td><td>{html.escape(f['message'])}</td></tr>"
        for s in verdict.suites for f in s.failures)
    not_run = ", ".join(verdict.not_run) or "none"
    not_exercised = "".join(f"<li>{html.escape(note)}</li>" for note in verdict.not_exercised)
    origins = verdict.generated_from
    origin_rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(where)}</td></tr>"
                          for name, where in origins.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shipyard verdict: {verdict.environment}</title>
<style>{_CSS}</style></head><body>
<h1>Verdict for {html.escape(verdict.environment)} <span class="badge {'pass' if ok else 'fail'}">{'PASSED' if ok else 'FAILED'}</span></h1>
<p class="muted">{subject}<br>target {verdict.target} · {verdict.started_at} → {verdict.finished_at} · {verdict.user}@{verdict.host} · not run: {not_run}</p>
<h2>Gates</h2><table><tr><th>suite</th><th>metric</th><th>min</th><th>max</th><th>measured</th><th></th><th>reason</th></tr>{gate_rows}</table>
<h2>Suites</h2><table><tr><th>suite</th><th>status</th><th>time</th><th>measured</th></tr>{suite_rows}</table>
<h2>Where the requests came from</h2>{f'<table><tr><th>suite</th><th>generator</th></tr>{origin_rows}</table>' if origin_rows else '<p class="muted">not recorded</p>'}
<h2>Load and stress</h2><div class="charts">{''.join(charts) or '<p class="muted">no load or stress suite ran</p>'}</div>
<h2>Not exercised by every suite</h2>{f'<ul>{not_exercised}</ul>' if not_exercised else '<p class="muted">none recorded</p>'}
<h2>Failed cases</h2>{f'<table><tr><th>suite</th><th>case</th><th>message</th></tr>{failures}</table>' if failures else '<p class="muted">none</p>'}
</body></html>"""


def summary(verdict: Verdict) -> str:
    rows = [[g.suite, g.metric, "-" if g.min is None else _fmt(g.min), "-" if g.max is None else _fmt(g.max),
             _fmt(g.measured), "pass" if g.passed else "FAIL", g.reason] for g in verdict.gates]
    head = f"verdict for {verdict.environment}: {'PASSED' if verdict.passed else 'FAILED'}"
    by_origin: dict[str, list[str]] = {}
    for suite, where in verdict.generated_from.items():
        by_origin.setdefault(where, []).append(suite)
    if by_origin:
        head += "\nrequests came from:" + "".join(f"\n  {', '.join(suites)}: {where}" for where, suites in by_origin.items())
    if verdict.not_exercised:
        head += "\nnot exercised by every suite:" + "".join(f"\n  {note}" for note in verdict.not_exercised)
    return head + "\n" + table(["suite", "metric", "min", "max", "measured", "result", "reason"], rows)
