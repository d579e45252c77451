"""Under xdist (`-n 2`, which kvmqa turns into its own --dist loadgroup) the cluster stage's worker reads
every host, also the ones another worker owns: it takes their owner's prefetched facts
(reports/HOST/prefetched.json beside facts.json) instead of probing them a second time. Counted where it
happens: each real sshd's log of the commands it ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kvmqa.core.paths import safe_name
from tests.support.sshd import client_key, start_sshd
from tests.support.suite import run_suite

STAGES = ("suites/test_00_reach.py", "suites/test_10_cpu.py", "suites/test_65_cluster.py")


def commands(log: Path) -> int:
    """Commands the host ran over ssh (sshd logs each session at VERBOSE, also through a ControlMaster)."""
    return log.read_text().count("Starting session: command")


@pytest.mark.usefixtures("libvirtd")
def test_the_cluster_worker_takes_the_other_workers_facts_instead_of_probing_again(tmp_path: Path) -> None:
    key = client_key(tmp_path)
    servers = [start_sshd(tmp_path / f"h{i}", key, log_level="VERBOSE") for i in range(2)]
    try:
        known = tmp_path / "known_hosts"
        known.write_text("".join(s.known_hosts.read_text() for s in servers))
        run = run_suite(
            tmp_path / "reports",
            "-rs",
            "-n",
            "2",
            "--hosts",
            ",".join(s.url() for s in servers),
            "--ssh-identity-file",
            str(key),
            "--known-hosts",
            str(known),
            "--sudo",
            paths=STAGES,
            timeout=300,
        )
        counts = [commands(s.workdir / f"sshd_{s.port}.log") for s in servers]
    finally:
        for s in servers:
            s.stop()
    names = [f"127.0.0.1:{s.port}" for s in servers]
    print(run.stdout[-2500:], counts)
    assert set(run.results["matrix"]) == set(names), run.stdout[-3000:]
    # both hosts are this machine (one boot id): the cluster stage says so, after reading both hosts' facts
    assert re.search(r"SKIPPED.*\[cluster\] cluster\.\S+: .*are one machine \(one boot id\)", run.stdout), (
        run.stdout[-3000:]
    )
    # one command per host (its probe), on the worker that owns it: the cluster's worker probed neither again
    assert counts == [1, 1], counts
    for name in names:
        handed = tmp_path / "reports" / safe_name(name) / "prefetched.json"
        assert json.loads(handed.read_text()) == {"gathered": []}  # no libvirt stage selected: probe only
        assert run.results["hosts"][name]["round_trips"]["ssh_commands"] == 1
