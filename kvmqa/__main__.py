"""kvmqa's small command line (the suites themselves run under pytest: see README).

    python -m kvmqa checks            # every check: id, level, title, hint
    python -m kvmqa probe [URL]       # probe one target and print its facts as JSON
    python -m kvmqa merge OUT a.json b.json ...   # merge per-host results.json into one report
    python -m kvmqa screenshot reports/report.html  # render the report in headless Chromium -> report.png
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys


def cmd_checks(args: argparse.Namespace) -> int:
    from kvmqa.checks import all_stages

    for stage in all_stages():
        for c in stage:
            print(f"{c.id:34} {c.level.value:5} {c.title}")
            if args.hints and c.hint:
                print(f"{'':34}       hint: {c.hint}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from kvmqa.probe import run_probe
    from kvmqa.targets import Target, TargetError

    target = Target.from_url(args.url, sudo=args.sudo, strict_host_keys=not args.no_strict_host_keys)
    try:
        facts, _ = run_probe(target)
    except TargetError as exc:
        print(f"kvmqa: {exc}", file=sys.stderr)
        return 2
    json.dump(facts, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    try:
        merge = importlib.import_module("kvmqa.report.merge")
    except ModuleNotFoundError:
        print("kvmqa: merge is not available in this build", file=sys.stderr)
        return 2
    return int(merge.main([args.out, *args.results]))


def cmd_screenshot(args: argparse.Namespace) -> int:
    from kvmqa.report import screenshot

    return int(screenshot.main(args.rest))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvmqa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("checks", help="list every check")
    p.add_argument("--hints", action="store_true")
    p.set_defaults(fn=cmd_checks)
    p = sub.add_parser("probe", help="probe one target, print facts")
    p.add_argument("url", nargs="?", default="local://")
    p.add_argument("--sudo", action="store_true")
    p.add_argument("--no-strict-host-keys", action="store_true")
    p.set_defaults(fn=cmd_probe)
    p = sub.add_parser("merge", help="merge results.json files into one report")
    p.add_argument("out")
    p.add_argument("results", nargs="+")
    p.set_defaults(fn=cmd_merge)
    p = sub.add_parser("screenshot", help="render a report.html in headless Chromium and write a PNG beside it")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_screenshot)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
