"""Round trips and wall time: kvmqa's verify stages versus asking testinfra one question per check.

    .venv/bin/python bench/bench_round_trips.py                 # starts its own sshd on loopback (root)
    .venv/bin/python bench/bench_round_trips.py --repeat 5

Both ways check the same SSH target (user kvmqa-ci with sudo, strict host keys) for the same checks
(stages reach, cpu, packages, libvirt: one naive question per kvmqa check ID). kvmqa: the probe (one
command) and one libvirt connection. Naive: testinfra's ssh backend with its defaults, one command per
question (and what testinfra itself runs: system_info, ...); a second naive row adds ssh connection
multiplexing (ControlPath), the best case for it. Every measurement starts without an ssh master.
Prints round trips, wall time (median of --repeat) and the ratios. Goals: >= 10x fewer round trips and
>= 5x less wall time than naive.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvmqa.config.options import RunOptions  # noqa: E402
from kvmqa.config.profile import Profile  # noqa: E402
from kvmqa.session.host import HostSession  # noqa: E402
from kvmqa.stages import builtin  # noqa: E402
from kvmqa.transport.target import Target  # noqa: E402

STAGES = ("reach", "cpu", "packages", "libvirt")
KVM_IOCTLS = (
    "import fcntl,os; f=os.open('/dev/kvm',os.O_RDWR); v=fcntl.ioctl(f,0xAE00,0); "
    "print(v); vm=fcntl.ioctl(f,0xAE01,0); print('vm', vm)"
)
VIRSH = "virsh -c qemu:///system"


def naive_questions(host: Any) -> dict[str, Callable[[], Any]]:
    """One testinfra question per kvmqa check: what a suite written the usual testinfra way asks."""
    pkg = host.package
    return {
        "reach.probe": lambda: host.run("true"),
        "cpu.hw-virt": lambda: host.run("grep -cE '(vmx|svm)' /proc/cpuinfo"),
        "cpu.kvm-module": lambda: host.run("grep -E '^kvm_(intel|amd) ' /proc/modules"),
        "cpu.kvm-device": lambda: host.file("/dev/kvm").exists,
        "cpu.kvm-device-access": lambda: host.run("test -r /dev/kvm -a -w /dev/kvm"),
        "cpu.kvm-qemu-user-access": lambda: host.run("runuser -u libvirt-qemu -- test -w /dev/kvm"),
        "cpu.kvm-api-version": lambda: host.run(f'python3 -c "{KVM_IOCTLS}"'),
        "cpu.kvm-create-vm": lambda: host.run(f'python3 -c "{KVM_IOCTLS}"'),
        "cpu.kvm-vcpu-run": lambda: host.run("python3 - < /dev/null"),
        "cpu.kvm-summary": lambda: host.run("ls /sys/module | grep -E '^kvm'"),
        "cpu.nested": lambda: host.run("cat /sys/module/kvm_*/parameters/nested"),
        "cpu.vhost-net": lambda: host.file("/dev/vhost-net").exists,
        "cpu.tun": lambda: host.file("/dev/net/tun").exists,
        "cpu.cgroups": lambda: host.file("/proc/cgroups").content_string,
        "cpu.iommu-acpi": lambda: host.run("ls /sys/firmware/acpi/tables"),
        "cpu.iommu-kernel": lambda: host.run("ls /sys/kernel/iommu_groups"),
        "cpu.sev": lambda: host.file("/sys/module/kvm_amd/parameters/sev").exists,
        "cpu.tdx": lambda: host.run("grep -c tdx /proc/cpuinfo"),
        "cpu.hugepages": lambda: host.sysctl("vm.nr_hugepages"),
        "cpu.host-cpus": lambda: host.run("nproc"),
        "cpu.host-memory": lambda: host.run("grep MemTotal /proc/meminfo"),
        "packages.distro": lambda: host.system_info.distribution,
        "packages.manager": lambda: host.exists("dpkg-query"),
        "packages.qemu": lambda: pkg("qemu-system-x86").is_installed,
        "packages.qemu-img": lambda: pkg("qemu-utils").is_installed,
        "packages.libvirt-daemon": lambda: pkg("libvirt-daemon-system").is_installed,
        "packages.libvirt-clients": lambda: pkg("libvirt-clients").is_installed,
        "packages.virt-install": lambda: pkg("virtinst").is_installed,
        "packages.ovmf": lambda: pkg("ovmf").is_installed,
        "packages.versions": lambda: pkg("qemu-system-x86").version,
        "libvirt.daemon": lambda: host.process.filter(comm="libvirtd"),
        "libvirt.socket": lambda: host.file("/run/libvirt/libvirt-sock").is_socket,
        "libvirt.virtlogd": lambda: host.process.filter(comm="virtlogd"),
        "libvirt.connect": lambda: host.run(f"{VIRSH} uri"),
        "libvirt.versions": lambda: host.run(f"{VIRSH} version"),
        "libvirt.kvm-guest": lambda: host.run(f"{VIRSH} capabilities"),
        "libvirt.qemu-guest": lambda: host.run(f"{VIRSH} capabilities"),
        "libvirt.domcapabilities": lambda: host.run(f"{VIRSH} domcapabilities --virttype kvm"),
        "libvirt.default-network": lambda: host.run(f"{VIRSH} net-info default"),
        "libvirt.storage-pool": lambda: host.run(f"{VIRSH} pool-list"),
        "libvirt.virt-host-validate": lambda: host.run("virt-host-validate qemu"),
    }


def kvmqa_way(url: str, key: Path, known: Path) -> dict[str, Any]:
    """The verify stages through kvmqa: one probe, one libvirt connection, every check evaluated."""
    tempfile.tempdir = tempfile.mkdtemp(
        prefix="kb-", dir="/tmp"
    )  # a fresh ssh ControlPath dir: no warm master
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-") as reports:
        target = Target.from_url(url, sudo=True, identity_file=key, known_hosts=known)
        session = HostSession(target, Profile(), RunOptions(reports_dir=Path(reports)), builtin())
        started = time.perf_counter()
        checks = 0
        for stage in builtin():
            if stage.name not in STAGES:
                continue
            for check in stage:
                finding = session.evaluate(stage, check)
                checks += 1
                assert finding.verdict.value != "error", finding.message
        wall = time.perf_counter() - started
        trips = target.round_trips + session.libvirt_connects
        session.close_libvirt()
    assert session.findings["libvirt.connect"].verdict.value == "pass", session.findings[
        "libvirt.connect"
    ].message
    return {"checks": checks, "round_trips": trips, "wall_s": wall}


def naive_way(url: str, key: Path, known: Path, multiplex: bool) -> dict[str, Any]:
    import testinfra.backend
    import testinfra.host

    tempfile.tempdir = tempfile.mkdtemp(prefix="kb-", dir="/tmp")
    extra = f"-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known}"
    kwargs: dict[str, Any] = {"ssh_identity_file": str(key), "sudo": True, "ssh_extra_args": extra}
    if multiplex:
        kwargs["controlpath"] = f"{tempfile.tempdir}/cm"  # one target: no %C (testinfra %-formats commands)
    host = testinfra.host.Host(
        testinfra.backend.get_backend(url, **kwargs)
    )  # not get_host: it caches facts across runs
    counted = {"n": 0}
    run_ssh = host.backend.run_ssh

    def counting_run_ssh(command: str) -> Any:
        counted["n"] += 1
        return run_ssh(command)

    host.backend.run_ssh = counting_run_ssh
    questions = naive_questions(host)
    started = time.perf_counter()
    for ask in questions.values():
        ask()
    wall = time.perf_counter() - started
    if multiplex:
        import subprocess

        port = url.rsplit(":", 1)[1]
        subprocess.run(
            [
                "ssh",
                "-o",
                f"ControlPath={kwargs['controlpath']}",
                "-p",
                port,
                url.split("//")[1].rsplit(":", 1)[0],
                "-O",
                "exit",
            ],
            capture_output=True,
        )
    return {"checks": len(questions), "round_trips": counted["n"], "wall_s": wall}


def median_of(fn: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    runs = [fn() for _ in range(repeat)]
    out = dict(runs[-1])
    out["wall_s"] = statistics.median(r["wall_s"] for r in runs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from tests.support.daemons import start_libvirtd
    from tests.support.fleet import start_fleet

    start_libvirtd()
    with tempfile.TemporaryDirectory(prefix="kvmqa-bench-sshd-") as work:
        fleet = start_fleet(Path(work), 1)
        try:
            url, key, known = fleet.urls()[0], fleet.key, fleet.known_hosts
            assert known is not None
            kvmqa = median_of(lambda: kvmqa_way(url, key, known), args.repeat)
            naive = median_of(lambda: naive_way(url, key, known, multiplex=False), args.repeat)
            mux = median_of(lambda: naive_way(url, key, known, multiplex=True), args.repeat)
        finally:
            fleet.stop()
    print(f"target: {url} (sudo, strict host keys); stages {', '.join(STAGES)}; median of {args.repeat}")
    print(f"{'way':<36}{'checks':>7}{'round trips':>13}{'wall s':>9}{'trips ratio':>13}{'time ratio':>12}")
    for name, r in (
        ("kvmqa (probe + libvirt connection)", kvmqa),
        ("naive testinfra (defaults)", naive),
        ("naive testinfra + ssh multiplexing", mux),
    ):
        print(
            f"{name:<36}{r['checks']:>7}{r['round_trips']:>13}{r['wall_s']:>9.2f}"
            f"{r['round_trips'] / kvmqa['round_trips']:>12.1f}x{r['wall_s'] / kvmqa['wall_s']:>11.1f}x"
        )
    trips, wall = naive["round_trips"] / kvmqa["round_trips"], naive["wall_s"] / kvmqa["wall_s"]
    print(
        f"goals vs naive testinfra: round trips {trips:.1f}x fewer (goal >= 10x: "
        f"{'met' if trips >= 10 else 'MISSED'}), "
        f"wall time {wall:.1f}x less (goal >= 5x: {'met' if wall >= 5 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
