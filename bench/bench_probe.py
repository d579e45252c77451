"""The probe's own time: the one-round-trip sh script, locally and over a loopback ssh target (sudo).

    .venv/bin/python bench/bench_probe.py                 # 10 runs each, starts its own sshd on loopback
    (root)
    .venv/bin/python bench/bench_probe.py --repeat 20 --no-ssh
    .venv/bin/python bench/bench_probe.py --ref main      # the probe as a git ref had it, for before/after
    .venv/bin/python bench/bench_probe.py --url ssh://qa@127.0.0.1:PORT --identity KEY --known-hosts FILE
    --repeat 3
                                                          # an ssh target that already runs (a lab host), with
                                                          sudo

Prints the median, min and max wall time per way, the script's size and its section count. With --ref the
script is built from that ref's kvmqa/gather/probe/ (kvmqa/probe/ in older trees) and its stages' probe.sh
(git show), so one tree measures both the old and the new probe.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvmqa.gather.facts import split_sections  # noqa: E402
from kvmqa.gather.probe import build_script  # noqa: E402
from kvmqa.stages import builtin  # noqa: E402
from kvmqa.transport.target import Target  # noqa: E402


def script_at(ref: str | None) -> str:
    """The probe script of the working tree, or of a git ref (its probe files built the same way)."""
    if ref is None:
        return build_script(builtin().probe_snippets(("kvm-host",)))
    import kvmqa.gather.probe as probe

    folder = "kvmqa/gather/probe"  # kvmqa/probe before the one-stage-one-folder layout
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{ref}:{folder}"], cwd=ROOT, capture_output=True, text=True
    )
    if listed.returncode != 0:
        folder = "kvmqa/probe"
        listed = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{ref}:{folder}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
    names = listed.stdout.split()
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-probe-") as tmp:
        for name in names:
            if name.endswith((".sh", ".py")):
                text = _show(ref, f"{folder}/{name}")
                if "# roles:" not in "\n".join(text.splitlines()[:5]) or "kvm-host" in text.splitlines()[0]:
                    (Path(tmp) / name).write_text(text)  # older trees: role-limited snippets in the folder
        original = probe.resources.files
        probe.resources.files = lambda _pkg: Path(tmp)  # type: ignore[assignment,return-value]
        try:
            return build_script(_stage_snippets_at(ref))
        finally:
            probe.resources.files = original  # type: ignore[assignment]


def _show(ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def _stage_snippets_at(ref: str) -> list[str]:
    """The stages' probe.sh of a ref (none in older trees), in stage order, for a kvm-host (no role-limited
    stage)."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", ref, "kvmqa/stages"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    found = []
    for path in (p for p in listed if p.endswith("/probe.sh")):
        declared = _show(ref, path.replace("probe.sh", "__init__.py"))
        order = re.search(r"order=(\d+)", declared)
        if "roles=" not in declared and order:
            found.append((int(order.group(1)), _show(ref, path)))
    return [text for _, text in sorted(found)]


def time_runs(target: Target, script: str, repeat: int) -> tuple[list[float], int]:
    walls = []
    sections = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = target.run(script, timeout=180)
        walls.append(time.perf_counter() - started)
        assert "@@kvmqa:probe_env" in result.stdout, result.stderr[-500:]
        sections = len(split_sections(result.stdout))
    return walls, sections


def row(name: str, walls: list[float], sections: int) -> str:
    return (
        f"{name:<34}{len(walls):>5}{statistics.median(walls):>10.3f}{min(walls):>9.3f}{max(walls):>9.3f}"
        f"{sections:>10}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--ref", help="measure the probe of this git ref instead of the working tree")
    parser.add_argument("--no-ssh", action="store_true", help="local runs only")
    parser.add_argument("--url", help="time only this ssh target (with sudo), e.g. a lab host")
    parser.add_argument("--identity", help="the ssh key for --url")
    parser.add_argument("--known-hosts", help="the known_hosts file for --url")
    args = parser.parse_args()
    script = script_at(args.ref)
    print(f"probe of {args.ref or 'the working tree'}: {len(script)} bytes; median of {args.repeat} runs")
    print(f"{'way':<34}{'runs':>5}{'median s':>10}{'min s':>9}{'max s':>9}{'sections':>10}")
    if args.url:
        target = Target.from_url(
            args.url, sudo=True, identity_file=args.identity, known_hosts=args.known_hosts
        )
        walls, sections = time_runs(target, script, args.repeat)
        print(row(f"{args.url} (sudo)", walls, sections))
        return 0
    walls, sections = time_runs(Target.from_url("local://"), script, args.repeat)
    print(row("local:// (root, sh -s)", walls, sections))
    if not args.no_ssh:
        from tests.support.fleet import start_fleet

        with tempfile.TemporaryDirectory(prefix="kvmqa-bench-sshd-") as work:
            fleet = start_fleet(Path(work), 1)
            try:
                url = fleet.urls()[0]
                target = Target.from_url(
                    url, sudo=True, identity_file=fleet.key, known_hosts=fleet.known_hosts
                )
                walls, sections = time_runs(target, script, args.repeat)
                print(row(f"{url.split('@')[0]}@loopback (sudo)", walls, sections))
            finally:
                fleet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
