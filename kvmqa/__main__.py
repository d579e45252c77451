"""kvmqa's command line.

kvmqa run [--stages cpu,libvirt] [pytest options]   # the packaged suites, from any directory; reports in
./reports
python -m kvmqa checks            # every check: id, level, title, hint
python -m kvmqa probe [URL]       # probe one target and print its facts as JSON
python -m kvmqa merge OUT a.json b.json ...   # merge per-host results.json into one report
python -m kvmqa evaluate probe.txt --host NAME [--groups kvm_hosts] --out DIR   # raw probe output ->
DIR/results.json
python -m kvmqa evaluate-cluster DIR/h1/results.json DIR/h2/results.json --out DIR/cluster   # the cluster
    checks the hosts' own facts decide (the others: named as not measured)
python -m kvmqa probe-script --out-dir DIR --hosts-groups JSON   # the probe scripts ansible/kvmqa.yml runs
python -m kvmqa screenshot reports/report.html  # render the report in headless Chromium -> report.png
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any


def cmd_run(rest: list[str]) -> int:
    """The packaged suites under pytest, with kvmqa's own pytest settings; reports in the current
    directory."""
    import os
    from pathlib import Path

    from kvmqa.core.paths import data_file
    from kvmqa.stages import builtin

    stages: list[str] | None = None
    args: list[str] = []
    it = iter(rest)
    for arg in it:
        if arg == "--stages" or arg.startswith("--stages="):
            value = arg.split("=", 1)[1] if "=" in arg else next(it, "")
            stages = [s for s in value.split(",") if s]
        else:
            args.append(arg)
    registry = builtin()
    if stages is None:
        suites = ["kvmqa.suites"]
    else:
        site_names = {"site"}  # `site` or a --site-checks stage's name: the site suite
        if any(
            s not in registry and s != "site" for s in stages
        ):  # only then load the lab's own modules here
            site_names.update(_site_stage_names(args))
        unknown = [s for s in stages if s not in registry and s not in site_names]
        if unknown:
            print(
                f"kvmqa: --stages: unknown stage {unknown[0]!r} (stages: "
                f"{', '.join([*registry.names(), *sorted(site_names)])})",
                file=sys.stderr,
            )
            return 2
        suites = list(
            dict.fromkeys(
                "kvmqa.suites."
                + ("test_70_site" if s in site_names else suite_module(registry.get(s).order, s))
                for s in stages
            )
        )
    # rootdir: the package, so test ids read suites/test_NN_<stage>.py::... as in a checkout; reports go to
    # ./reports
    root = Path(__file__).resolve().parent
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(data_file("pytest.ini")),
        "--rootdir",
        str(root),
        "--pyargs",
        *suites,
        *args,
    ]
    os.execv(
        sys.executable, argv
    )  # a fresh interpreter: pytest imports (and assert-rewrites) the plugin itself
    return 2  # not reached


def _site_stage_names(pytest_args: list[str]) -> list[str]:
    """The stage names in the --site-checks folders among pytest's arguments (a folder that does not load:
    none;
    the run itself reports it)."""
    from pathlib import Path

    from kvmqa.core.stage import StageError
    from kvmqa.site import load_site_stages

    folders = [a.split("=", 1)[1] for a in pytest_args if a.startswith("--site-checks=")]
    folders += [b for a, b in zip(pytest_args, pytest_args[1:], strict=False) if a == "--site-checks"]
    try:
        return [stage.name for stage in load_site_stages([Path(d) for d in folders])] if folders else []
    except StageError:
        return []


def suite_module(order: int, name: str) -> str:
    """A stage's suite file in kvmqa/suites/: test_NN_<name>."""
    return f"test_{order:02d}_{name}"


def cmd_checks(args: argparse.Namespace) -> int:
    from kvmqa.stages import builtin

    site = _site_stages(args.site_checks)
    if site is None:
        return 2
    for stage in builtin().with_stages(site):
        for c in stage:
            print(f"{c.id:34} {c.level.value:5} {c.title}")
            if args.hints and c.hint:
                print(f"{'':34}       hint: {c.hint}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from kvmqa.gather.probe import run_probe
    from kvmqa.stages import builtin
    from kvmqa.transport.target import Target, TargetError

    target = Target.from_url(args.url, sudo=args.sudo, strict_host_keys=not args.no_strict_host_keys)
    registry = builtin()
    try:
        facts, _ = run_probe(target, registry.probe_snippets(target.roles), registry.probe_parsers())
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A raw probe output (from Ansible, or a saved reports/HOST/probe.txt) -> results.json, the same checks
    as a run."""
    from pathlib import Path

    from kvmqa.config.profile import ProfileError
    from kvmqa.offline import evaluate
    from kvmqa.policy.waivers import WaiverError

    site = _site_stages(args.site_checks)
    if site is None:
        return 2
    try:
        text = sys.stdin.read() if args.probe == "-" else Path(args.probe).read_text(errors="replace")
    except OSError as exc:
        print(f"kvmqa: {args.probe}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        results = evaluate(
            text,
            args.host,
            Path(args.out),
            groups=[g for g in args.groups.split(",") if g],
            roles=tuple(r for r in args.roles.split(",") if r) or None,
            unreachable=args.unreachable,
            error=args.error,
            rc=args.rc,
            duration=args.duration,
            profile_path=Path(args.profile) if args.profile else None,
            waivers=Path(args.waivers) if args.waivers else None,
            stages=tuple(s for s in args.stages.split(",") if s) or None,
            site=site,
        )
    except (ProfileError, WaiverError, KeyError) as exc:  # KeyError: an unknown stage
        print(f"kvmqa: {exc}", file=sys.stderr)
        return 2
    print(f"{args.host}: " + ", ".join(f"{s} {v}" for s, v in results.matrix().get(args.host, {}).items()))
    return 0


def cmd_evaluate_cluster(args: argparse.Namespace) -> int:
    """The cluster checks over the hosts `evaluate` judged (their results.json) -> OUT/results.json."""
    from pathlib import Path

    from kvmqa.config.profile import ProfileError
    from kvmqa.offline import ClusterInputError, evaluate_cluster
    from kvmqa.policy.waivers import WaiverError
    from kvmqa.report.results import pairs_text

    try:
        results, why = evaluate_cluster(
            [Path(p) for p in args.results],
            Path(args.out),
            profile_path=Path(args.profile) if args.profile else None,
            waivers=Path(args.waivers) if args.waivers else None,
        )
    except (ProfileError, WaiverError, ClusterInputError) as exc:
        print(f"kvmqa: {exc}", file=sys.stderr)
        return 2
    if results is None:
        print(f"kvmqa: no cluster stage: {why}")
        return 0
    for f in results.findings:
        print(f"cluster {f.check_id}: {f.verdict.value}: {f.message}")
    for matrix in results.pair_matrices().values():
        print(pairs_text(matrix))
    return 0


def _site_stages(folders: list[str]) -> list[Any] | None:
    """The site stages of --site-checks folders (None: an error, already printed in one line)."""
    from pathlib import Path

    from kvmqa.core.stage import StageError
    from kvmqa.site import load_site_stages

    try:
        return load_site_stages([Path(d) for d in folders]) if folders else []
    except StageError as exc:
        print(f"kvmqa: {exc}", file=sys.stderr)
        return None


def cmd_probe_script(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kvmqa.offline import hosts_groups_arg, write_probe_scripts

    try:
        hosts = hosts_groups_arg(args.hosts_groups)
    except (ValueError, OSError) as exc:
        print(f"kvmqa: --hosts-groups: {exc}", file=sys.stderr)
        return 2
    site = _site_stages(args.site_checks)
    if site is None:
        return 2
    json.dump(write_probe_scripts(Path(args.out_dir), hosts, site), sys.stdout)
    print()
    return 0


def cmd_screenshot(args: argparse.Namespace) -> int:
    from kvmqa.report import screenshot

    return int(screenshot.main(args.rest))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:  # everything after `run` is pytest's (or --stages)
        return cmd_run(argv[1:])
    from kvmqa.offline import evaluated_stages  # what a probe output alone can decide

    parser = argparse.ArgumentParser(
        prog="kvmqa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="run the packaged suites under pytest: kvmqa run [--stages a,b] [pytest options]"
    )
    p = sub.add_parser("checks", help="list every check")
    p.add_argument("--hints", action="store_true")
    p.add_argument(
        "--site-checks", action="append", default=[], metavar="DIR", help="also a site-checks folder's checks"
    )
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
    p = sub.add_parser("evaluate", help="evaluate a raw probe output into results.json (the checks of a run)")
    p.add_argument("probe", help="the probe's raw output ('-': stdin)")
    p.add_argument("--host", required=True, help="the host's name in the report (its inventory name)")
    p.add_argument(
        "--groups", default="", help="the host's Ansible groups, comma-separated (they give its roles)"
    )
    p.add_argument(
        "--roles",
        default="",
        help="or its kvmqa roles, comma-separated (default: from --groups, else kvm-host)",
    )
    p.add_argument(
        "--unreachable", default=None, help="the host was unreachable: this message (no probe output)"
    )
    p.add_argument("--error", default=None, help="running the probe failed (a timeout, ...): this message")
    p.add_argument("--rc", type=int, default=None, help="the probe's exit status")
    p.add_argument("--duration", type=float, default=None, help="how long the probe took, seconds")
    p.add_argument("--profile", default=None)
    p.add_argument("--waivers", default=None)
    p.add_argument(
        "--stages",
        default="",
        help="stages to evaluate, comma-separated (default: those a probe output decides: "
        f"{','.join(evaluated_stages())}, "
        "and the site stages)",
    )
    p.add_argument(
        "--site-checks", action="append", default=[], metavar="DIR", help="also a site-checks folder's stages"
    )
    p.add_argument("--out", required=True, help="reports directory: OUT/results.json, OUT/HOST/facts.json")
    p.set_defaults(fn=cmd_evaluate)
    p = sub.add_parser(
        "evaluate-cluster",
        help="the cluster checks a probe output decides, over hosts `evaluate` judged (their results.json)",
    )
    p.add_argument("results", nargs="+", help="each host's results.json from `evaluate`")
    p.add_argument("--profile", default=None)
    p.add_argument("--waivers", default=None)
    p.add_argument("--out", required=True, help="reports directory: OUT/results.json, OUT/facts.json")
    p.set_defaults(fn=cmd_evaluate_cluster)
    p = sub.add_parser(
        "probe-script", help="write the probe scripts ansible/kvmqa.yml runs, one per role set"
    )
    p.add_argument("--out-dir", required=True)
    p.add_argument(
        "--hosts-groups", required=True, help="JSON {host: [groups]} (or @FILE); prints {host: script}"
    )
    p.add_argument(
        "--site-checks",
        action="append",
        default=[],
        metavar="DIR",
        help="add a site-checks folder's probe snippets",
    )
    p.set_defaults(fn=cmd_probe_script)
    p = sub.add_parser(
        "screenshot", help="render a report.html in headless Chromium and write a PNG beside it"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_screenshot)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
