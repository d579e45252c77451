"""Install mode for real on this machine: take the host back, plan, install, install again; and a failing
step.

The host is always restored in `finally` (daemons running, default network and pool active, the package
installed).
Measured numbers are printed (run with -s to see them).
"""

from __future__ import annotations

from pathlib import Path

from tests.install_support import (
    PACKAGE,
    TEST_USER,
    break_host,
    host_lock,
    requires_host,
    restore_host,
    run_suites,
    sh,
    statuses,
    wait_quiet,
)
from tests.support import libvirt_state
from tests.support.sshd import Sshd

pytestmark = requires_host

STEPS = (
    "install.modules",
    "install.packages",
    "install.daemons",
    "install.default-network",
    "install.storage-pool",
    "install.libvirt-user",
)
HOST_STEPS = STEPS[
    1:
]  # what this machine can do (it cannot load kernel modules: no /proc/modules, no modprobe)


def _modules_outcome(results: dict) -> dict:
    return next(a for a in results["actions"] if a["id"] == "install.modules")


def test_take_the_host_back(tmp_path: Path) -> None:
    user = ("--libvirt-user", TEST_USER)
    with host_lock():
        sh(f"id {TEST_USER} >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin {TEST_USER}", check=True)
        wait_quiet()
        saved = libvirt_state.capture()
        try:
            break_host()
            assert not sh("pidof libvirtd").stdout.strip()
            _, plan, plan_s = run_suites(tmp_path / "plan", "--plan", *user)
            _, first, first_s = run_suites(tmp_path / "install-1", "--mode", "install", *user)
            _, second, second_s = run_suites(tmp_path / "install-2", "--mode", "install", "-n", "2", *user)
        finally:
            problems = restore_host(saved)
            sh(f"userdel {TEST_USER}")
        assert problems == [], problems

    # --plan on the broken host lists exactly what install mode then attempted
    planned = {a["id"] for a in plan["actions"] if a["status"] == "planned"}
    # attempted: ran a command (a step that is "not possible" here fails without running anything, in both
    # modes)
    attempted = {
        a["id"]
        for a in first["actions"]
        if a["status"] == "done" or (a["status"] == "failed" and a["rc"] is not None)
    }
    assert planned == attempted, (planned, attempted)
    assert set(HOST_STEPS) <= planned
    assert all(a["rc"] is None for a in plan["actions"])

    # the first install run does every step, verifies it, and the same run's verify stages pass
    got = statuses(first)
    assert list(got) == list(STEPS)
    assert {k: got[k] for k in HOST_STEPS} == dict.fromkeys(HOST_STEPS, "done"), first["actions"]
    actions = {a["id"]: a for a in first["actions"]}
    assert all("verified:" in actions[k]["message"] for k in HOST_STEPS)
    assert (
        PACKAGE in actions["install.packages"]["command"]
        and "apt-get install" in actions["install.packages"]["command"]
    )
    assert (
        "libvirtd -d" in actions["install.daemons"]["command"]
        and "no systemd" in actions["install.daemons"]["message"]
    )
    # warnings (libvirt 9.0 is below nova's recommended 10.0) do not fail a stage
    assert first["matrix"]["local"]["packages"] == "pass" and first["matrix"]["local"]["libvirt"] in (
        "pass",
        "warn",
    )
    mods = _modules_outcome(first)
    if mods["status"] == "failed":  # this machine: the real message, and it blocked nothing
        assert "modprobe" in mods["message"]
        assert mods["rc"] is not None or mods["message"].startswith(
            "not possible"
        )  # no modprobe: nothing ran
    for a in first["actions"]:
        assert set(a) >= {
            "host",
            "stage",
            "id",
            "description",
            "status",
            "command",
            "rc",
            "duration",
            "output_tail",
        }
    assert first["matrix"]["local"]["install"] in ("pass", "fail")
    assert 'id="kvmqa-actions"' in (tmp_path / "install-1" / "report.html").read_text()

    # the second run (under xdist: the actions travel from the worker) changes nothing
    again = statuses(second)
    assert list(again) == list(STEPS), second["actions"]  # each step once: one worker per host
    assert "done" not in again.values()
    assert {k: again[k] for k in HOST_STEPS} == dict.fromkeys(HOST_STEPS, "already-satisfied")
    assert again["install.modules"] in ("already-satisfied", "failed")
    if again["install.modules"] == "failed":
        assert _modules_outcome(second)["message"] == mods["message"]  # same honest failure, nothing changed

    done = [f"{a['id']} {a['duration']:.1f}s" for a in first["actions"] if a["status"] == "done"]
    counts = {s: sum(1 for v in again.values() if v == s) for s in ("done", "already-satisfied")}
    print(
        f"\nplan: {len(planned)} planned in {plan_s:.1f}s; install 1: {len(done)} done ({', '.join(done)}) "
        f"in {first_s:.1f}s; install 2 (-n 2): {counts['done']} done, {counts['already-satisfied']} already "
        "satisfied "
        f"in {second_s:.1f}s"
    )


def test_a_failing_step_fails_with_apts_message_and_blocks_only_what_needs_it(tmp_path: Path) -> None:
    bogus = "kvmqa-no-such-package"
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"name: bogus-extra\nextra_packages:\n  debian: [{bogus}]\n")
    with host_lock():
        saved = libvirt_state.capture()
        try:
            proc, res, took = run_suites(tmp_path / "r", "--mode", "install", "--profile", str(profile))
        finally:
            problems = restore_host(saved)
        assert problems == [], problems
    got = statuses(res)
    pkg = next(a for a in res["actions"] if a["id"] == "install.packages")
    assert pkg["status"] == "failed" and f"E: Unable to locate package {bogus}" in pkg["message"], pkg
    assert pkg["rc"] == 100
    # the daemons, network and pool need the libvirt daemon package, not the bogus extra: they go on
    for dep in ("install.daemons", "install.default-network", "install.storage-pool"):
        assert got[dep] in ("done", "already-satisfied"), (dep, res["actions"])
    assert res["matrix"]["local"]["libvirt"] in ("pass", "warn")
    finding = next(f for f in res["results"] if f["check_id"] == "install.packages")
    assert finding["stage"] == "install" and finding["verdict"] == "fail"
    assert res["matrix"]["local"]["install"] == "fail" and proc.rc == 1
    print(
        f"\nfailing step: {pkg['duration']:.1f}s (apt-get install, apt-get update, retry), whole run "
        f"{took:.1f}s"
    )


def test_refused_without_root_and_sudo(tmp_path: Path, sshd: Sshd) -> None:
    """A non-root ssh target without --sudo: every step that would change something is refused; nothing
    runs."""
    # --libvirt-user nobody: a step that needs root on this otherwise complete host (module loading is not
    # possible here at all, so it fails as "not possible" before any question of root)
    args = [
        "--hosts",
        sshd.url(),
        "--ssh-identity-file",
        str(sshd.client_key),
        "--known-hosts",
        str(sshd.known_hosts),
        "--libvirt-user",
        "nobody",
    ]
    with host_lock():
        _, res, _ = run_suites(tmp_path / "r", "--mode", "install", *args)
    acts = {a["id"]: a for a in res["actions"]}
    assert acts and all(a["rc"] is None for a in acts.values()), acts  # no command ran
    refused = [a for a in acts.values() if a["status"] == "refused"]
    assert refused, acts
    assert all(
        "needs root" in a["message"]
        and "(uid " in a["message"]
        and "--sudo" in a["message"]
        and "nothing was changed" in a["message"]
        for a in refused
    )
    assert all(
        f["verdict"] == "fail"
        for f in res["results"]
        if f["stage"] == "install" and f["details"]["action"]["status"] == "refused"
    )

    # the same target with --sudo: the probe runs as root, nothing is refused (plan only: nothing changes)
    with host_lock():
        _, plan, _ = run_suites(tmp_path / "p", "--plan", "--sudo", *args)
    assert plan["actions"] and not [a for a in plan["actions"] if a["status"] == "refused"], plan["actions"]
    possible = [
        a for a in plan["actions"] if not a["message"].startswith("not possible")
    ]  # modules: not here
    assert {a["status"] for a in possible} <= {"planned", "already-satisfied"}, plan["actions"]
