"""A standalone HTML report (no pytest-html): the host x stage matrix, extra sections and details.

Used by `python -m kvmqa merge` for results gathered on many machines:

    write_standalone(results, Path("merged/report.html"), title="kvmqa fleet (3 runs merged)")
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from kvmqa.report.html import sections_html, summary_html
from kvmqa.report.results import RunResults


def standalone_html(results: RunResults, title: str, extra_sections: list[str] | None = None) -> str:
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:16px}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        + summary_html(results, [*sections_html(results), *(extra_sections or [])])
        + "</body></html>"
    )


def write_standalone(
    results: RunResults, path: Path, title: str = "kvmqa report", extra_sections: list[str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(standalone_html(results, title, extra_sections))
    return path
