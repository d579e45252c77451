"""Every HTML kvmqa makes (pytest-html's summary and the standalone/merged report): the host x stage matrix,
details
per host and stage, actions, and the sections results.json records (waivers, baseline comparison, merged
runs)."""

from __future__ import annotations

from html import escape
from typing import Any

from kvmqa.core.model import Verdict
from kvmqa.core.paths import safe_name
from kvmqa.report.results import RunResults

COLOURS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "error": "#6a1b9a",
    "warn": "#ef6c00",
    "skip": "#757575",
    "waived": "#1565c0",
    "info": "#00838f",
}

# The body rules make pytest-html's report open with the matrix (its summary), the environment table after it.
STYLE = """
<style>
.kvmqa table{border-collapse:collapse;margin:6px 0 14px 0;font-size:13px}
.kvmqa th,.kvmqa td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
.kvmqa .v{color:#fff;font-weight:bold;text-align:center;white-space:nowrap}
.kvmqa .v a{color:#fff;text-decoration:none;display:block}
.kvmqa details{margin:4px 0}
.kvmqa summary{cursor:pointer;font-weight:bold}
.kvmqa .interrupted{background:#c62828;color:#fff;font-weight:bold;padding:8px 10px;font-size:15px}
.kvmqa .pairs td.cell{color:#fff;min-width:150px;max-width:320px;font-size:12px}
.kvmqa .pairs td.cell b{display:block;font-size:14px}
.kvmqa .pairs td.self{background:#eee;color:#999;text-align:center}
.kvmqa .emulated{background:#fff3e0;border:2px solid #ef6c00;padding:4px 8px;display:inline-block;
  font-weight:bold}
body{display:flex;flex-direction:column}
#environment-header,#environment{order:2}
body>div.summary~*{order:3}
</style>
"""


def anchor(host: str, stage: str) -> str:
    return f"kvmqa-{safe_name(host)}-{stage}"


def verdict_cell(verdict: str, href: str | None = None, label: str | None = None) -> str:
    text = escape(label or verdict.upper())
    inner = f'<a href="#{href}">{text}</a>' if href else text
    return f'<td class="v kvmqa-{verdict}" style="background:{COLOURS.get(verdict, "#999")}">{inner}</td>'


def round_trips_text(trips: dict[str, Any] | None) -> str:
    """'1 command + 1 libvirt connection': what checking the host cost."""
    if not trips:
        return "-"

    def count(n: Any, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    return (
        f"{count(trips.get('ssh_commands', '?'), 'command')} + "
        f"{count(trips.get('libvirt_connections', '?'), 'libvirt connection')}"
    )


def matrix_html(results: RunResults) -> str:
    stages = results.stages()
    rows = [
        "<tr><th>host</th>" + "".join(f"<th>{escape(s)}</th>" for s in stages) + "<th>round trips</th></tr>"
    ]
    for host in results.host_names():
        cells = []
        for s in stages:
            verdict, items = results.cell(host, s)
            if verdict is None:
                cells.append("<td>-</td>")
                continue
            label = verdict.value.upper()
            if any(f.details.get("label") == "EMULATED" and f.verdict == Verdict.PASS for f in items):
                label += " (EMULATED)"
            cells.append(verdict_cell(verdict.value, anchor(host, s), label))
        trips = results.hosts.get(host, {}).get("round_trips", {})
        trip_text = round_trips_text(trips)
        rows.append(f"<tr><th>{escape(host)}</th>{''.join(cells)}<td>{escape(trip_text)}</td></tr>")
    return f'<table id="kvmqa-matrix">{"".join(rows)}</table>'


def pairs_html(name: str, matrix: dict[str, Any]) -> str:
    """A run-scoped stage's host x host matrix (rows: source, columns: destination): green where the source's
    guests can go, else the colour of the failing check's verdict with its ID and the reason for that pair."""
    hosts = matrix["hosts"]
    head = "<tr><th>source ↓ / destination →</th>" + "".join(f"<th>{escape(h)}</th>" for h in hosts)
    head += "</tr>"
    rows = [head]
    for a in hosts:
        cells = []
        for b in hosts:
            if a == b:
                cells.append('<td class="self">—</td>')
                continue
            c = matrix["cells"][a][b]
            verdict = "pass" if c["ok"] else c["verdict"]
            title = "can take its guests" if c["ok"] else ("not judged" if verdict == "error" else "cannot")
            why = "" if c["ok"] else f"<code>{escape(c['check'])}</code><br>{escape(c['reason'])}"
            if c.get("also"):
                why += f"<br><i>also: {escape(', '.join(c['also']))}</i>"
            for move in c.get("migration", []):  # the migration stage: what happened beside the prediction
                outcome = (
                    f"moved, downtime {move.get('downtime_ms', '?')} ms" if move["ok"] else "migration FAILED"
                )
                why += f'<br><span class="kvmqa-moved-{"ok" if move["ok"] else "fail"}">'
                why += f"{escape(move['storage'])}: {escape(outcome)}</span>"
                if not move["ok"] and c["ok"]:
                    verdict, title = "fail", "predicted able, but"
            cells.append(
                f'<td class="cell kvmqa-pair-{verdict}" data-source="{escape(a)}" '
                f'data-destination="{escape(b)}" style="background:{COLOURS.get(verdict, "#999")}">'
                f"<b>{title}</b>{why}</td>"
            )
        rows.append(f"<tr><th>{escape(a)}</th>{''.join(cells)}</tr>")
    return (
        f'<h2 id="kvmqa-pairs-{safe_name(name)}">{escape(name)}: can the source take its guests to the '
        f'destination?</h2><table class="pairs" id="kvmqa-pairs">{"".join(rows)}</table>'
    )


def details_html(results: RunResults) -> str:
    out = []
    for host in results.host_names():
        out.append(f"<h3>{escape(host)}</h3>")
        for s in results.stages():
            verdict, items = results.cell(host, s)
            if not items:
                continue
            rows = [
                "<tr><th>check</th><th>level</th><th>verdict</th><th>message</th><th>hint</th><th>s</th></tr>"
            ]
            for f in items:
                msg = escape(f.message)
                if f.waiver:
                    msg += (
                        f"<br><i>waived: {escape(str(f.waiver.get('justification', '')))} (until "
                        f"{escape(str(f.waiver.get('expires', '')))})</i>"
                    )
                rows.append(
                    f"<tr><td><code>{escape(f.check_id)}</code><br>{escape(f.title)}</td><td>{f.level.value}</td>"
                    f"{verdict_cell(f.verdict.value)}<td>{msg}</td><td>{escape(f.hint)}</td><td>{f.duration:.3f}</td></tr>"
                )
            open_attr = " open" if verdict in (Verdict.FAIL, Verdict.ERROR) else ""
            out.append(
                f'<details id="{anchor(host, s)}"{open_attr}><summary>{escape(host)} / {escape(s)}: '
                f"{(verdict or Verdict.SKIP).value.upper()}</summary><table>{''.join(rows)}</table></details>"
            )
    return "".join(out)


def actions_html(actions: list[dict[str, Any]]) -> str:
    if not actions:
        return ""
    rows = [
        "<tr><th>host</th><th>stage</th><th>action</th><th>status</th><th>command</th><th>rc</th><th>s</th>"
        "<th>output "
        "(tail)</th></tr>"
    ]
    for a in actions:
        rows.append(
            f"<tr><td>{escape(str(a.get('host', '')))}</td><td>{escape(str(a.get('stage', '')))}</td>"
            f"<td><code>{escape(str(a.get('id', '')))}</code><br>{escape(str(a.get('description', '')))}</td>"
            f"<td>{escape(str(a.get('status', '')))}</td>"
            f"<td><code>{escape(str(a.get('command', '')))}</code></td>"
            f"<td>{escape(str(a.get('rc', '')))}</td><td>{float(a.get('duration', 0) or 0):.2f}</td>"
            f"<td><pre>{escape(str(a.get('output_tail', '')))}</pre></td></tr>"
        )
    return f'<h2>Install actions</h2><table id="kvmqa-actions">{"".join(rows)}</table>'


def interrupted_html(results: RunResults) -> str:
    """A run cut short: one banner line first in the report (when, what was in flight, cleanup, not run)."""
    if results.interruption is None:
        return ""
    return f'<p id="kvmqa-interrupted" class="interrupted">{escape(results.interruption.banner())}</p>'


def summary_html(results: RunResults, extra_sections: list[str] | None = None) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(results.counts().items()))
    errors = "".join(f"<li>{escape(e)}</li>" for e in results.errors)
    return (
        f'{STYLE}<div class="kvmqa">{interrupted_html(results)}'
        f"<h2>Hosts × stages</h2>{matrix_html(results)}<p>{escape(counts)}</p>"
        + "".join(pairs_html(name, m) for name, m in results.pair_matrices().items())
        + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "")
        + "".join(extra_sections or [])
        + actions_html(results.actions)
        + f"<h2>Details</h2>{details_html(results)}</div>"
    )


# -- sections recorded in results.json: waivers, baseline comparison, merged runs
# ------------------------------
def sections_html(results: RunResults) -> list[str]:
    """Report sections recorded in results.json (baseline comparison, waivers) rendered again."""
    out = []
    if results.sections.get("waivers"):
        out.append(waivers_html(results.sections["waivers"]))
    if results.sections.get("baseline_comparison"):
        out.append(comparison_html(results.sections["baseline_comparison"]))
    return out


def waivers_html(summary: dict[str, Any]) -> str:
    if not summary.get("waivers"):
        return ""
    warn = "".join(
        f'<li class="kvmqa-waiver-expired" style="color:#ef6c00;font-weight:bold">{escape(w)}</li>'
        for w in summary["warnings"]
    )
    rows = [
        "<tr><th>check</th><th>hosts</th><th>justification</th><th>expires</th><th>status</th><th>waived</th></tr>"
    ]
    for e in summary["waivers"]:
        status = "EXPIRED" if e["expired"] else ("applied" if e["applied_to"] else "valid, unused")
        rows.append(
            f"<tr><td><code>{escape(e['check'])}</code></td><td>{escape(', '.join(e['hosts']))}</td>"
            f"<td>{escape(e['justification'])}</td><td>{escape(e['expires'])}</td><td>{status}</td>"
            f"<td>{escape(', '.join(e['applied_to']) or '-')}</td></tr>"
        )
    return (
        '<h2 id="kvmqa-waivers">Waivers</h2>'
        + (f"<ul>{warn}</ul>" if warn else "")
        + f'<table id="kvmqa-waivers-table">{"".join(rows)}</table>'
    )


def _list(items: list[str], limit: int = 40) -> str:
    shown = ", ".join(escape(x) for x in items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def comparison_html(comparison: dict[str, Any]) -> str:
    out = [
        f'<h2 id="kvmqa-baseline">Baseline comparison</h2><p>baseline {escape(comparison["baseline"])} '
        f"({escape(comparison['baseline_created'])}): {comparison['regressions']} regression(s), "
        f"{len(comparison['changed_hosts'])} changed host(s)</p>"
    ]
    for host, h in comparison["hosts"].items():
        rows = []
        for r in h["regressions"]:  # first: what got worse; versions and capabilities are changes
            why = f"<br><small>{escape(r['message'])}</small>" if r.get("message") else ""
            rows.append(
                f'<tr class="kvmqa-regression" style="background:#ffebee"><td><b>REGRESSION</b></td>'
                f"<td><code>{escape(r['check_id'])}</code></td><td>{escape(r['before'])} → "
                f"<b>{escape(r['after'])}</b>{why}</td></tr>"
            )
        for v in h["versions"]:
            rows.append(
                f"<tr><td>version change</td><td>{escape(v['component'])}</td>"
                f"<td>{escape(str(v['before'] or '-'))} → {escape(str(v['after']))}</td></tr>"
            )
        for c in h["capabilities"]:
            change = (
                f'<span style="color:#2e7d32">gained: {_list(c["gained"])}</span> ' if c["gained"] else ""
            ) + (f'<span style="color:#c62828">lost: {_list(c["lost"])}</span>' if c["lost"] else "")
            rows.append(f"<tr><td>capability change</td><td>{escape(c['kind'])}</td><td>{change}</td></tr>")
        for r in h["improvements"]:
            rows.append(
                f"<tr><td>improvement</td><td><code>{escape(r['check_id'])}</code></td>"
                f"<td>{escape(r['before'])} → {escape(r['after'])}</td></tr>"
            )
        for note in h["unavailable"]:
            rows.append(f"<tr><td>note</td><td colspan=2>{escape(note)}</td></tr>")
        status = "" if h["status"] == "compared" else f" ({escape(h['status'])})"
        body = f"<table>{''.join(rows)}</table>" if rows else "<p>no change</p>"
        out.append(f'<h3 id="kvmqa-baseline-{safe_name(host)}">{escape(host)}{status}</h3>{body}')
    return "".join(out)


def sources_html(sources: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(s['file'])}</code></td><td>{escape(s['started'])}</td>"
        f"<td>{escape(', '.join(s['hosts']) or '-')}</td></tr>"
        for s in sources
    )
    return (
        f'<h2 id="kvmqa-merged">Merged runs</h2><p>{len(sources)} results files merged:</p><table '
        'id="kvmqa-merged-from" border=1 cellpadding=3 '
        f'style="border-collapse:collapse;font-size:13px"><tr><th>file</th><th>started</th><th>hosts</th></tr>{rows}</table>'
    )
