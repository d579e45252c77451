"""See the report as a person does: headless Chromium renders it, writes a PNG, or dumps the rendered DOM.

    png = screenshot(Path("reports/report.html"))        # -> reports/report.png
    dom = rendered_dom(Path("reports/report.html"))      # the DOM after scripts ran
    python -m kvmqa.report.screenshot reports/report.html [out.png]   # the same from a shell

Chromium runs with a throw-away profile and every network feature off: it only reads the file.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


class ScreenshotError(RuntimeError):
    pass


def find_browser() -> str | None:
    return next((p for p in (shutil.which(b) for b in BROWSERS) if p), None)


def _run(html: Path, extra: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    browser = find_browser()
    if browser is None:
        raise ScreenshotError("no Chromium found (apt-get install -y chromium)")
    html = Path(html).resolve()
    if not html.is_file():
        raise ScreenshotError(f"{html}: no such report")
    with tempfile.TemporaryDirectory(prefix="kvmqa-chromium-") as profile:
        argv = [browser, *QUIET_FLAGS, f"--user-data-dir={profile}", *extra, html.as_uri()]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ScreenshotError(f"Chromium did not finish rendering {html} within {timeout:.0f} s") from exc


def screenshot(
    html: Path, png: Path | None = None, *, width: int = 1400, height: int = 1000, timeout: float = 90
) -> Path:
    """Render `html` and write a PNG (default: report.png next to it)."""
    png = Path(png or Path(html).with_suffix(".png")).resolve()
    png.unlink(missing_ok=True)
    proc = _run(
        html,
        [f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=5000"],
        timeout,
    )
    if not png.is_file() or png.stat().st_size == 0:
        raise ScreenshotError(
            f"Chromium wrote no screenshot (rc={proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return png


def rendered_dom(html: Path, *, timeout: float = 90) -> str:
    """The DOM after Chromium loaded the page and ran its scripts (pytest-html builds its table in JS)."""
    proc = _run(html, ["--dump-dom", "--virtual-time-budget=5000"], timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        raise ScreenshotError(
            f"Chromium could not dump the DOM (rc={proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    head = Path(png).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ScreenshotError(f"{png}: not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m kvmqa.report.screenshot", description="render a report to a PNG"
    )
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path, nargs="?")
    args = parser.parse_args(argv)
    try:
        print(screenshot(args.html, args.png))
    except ScreenshotError as exc:
        print(f"kvmqa screenshot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
