"""Boot a lab image under QEMU TCG (`-cpu max`: AMD-V emulated, so kvm_amd loads inside) and reach it over
ssh.

Each boot writes only to a fresh qcow2 overlay in its run directory; the base image is never written. The lab
host reaches no network (user-mode networking with restrict=on); the only way in is ssh through a hostfwd port
on 127.0.0.1, with the image's recorded host key checked strictly.

    with boot(image, run_dir) as host:
        host.run("cat /sys/module/kvm_amd/parameters/nested").stdout
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.image import BuiltImage

QEMU = "qemu-system-x86_64"
QEMU_AARCH64 = "qemu-system-aarch64"
# Kernel arguments a CPU model needs under TCG (measured with QEMU 7.2): with `-cpu Opteron_G5`, Debian's 6.1
# and
# 6.12 kernels hang at XSAVE set-up, right after the "Speculative Store Bypass" line; `noxsave` boots them,
# and
# the host keeps svm, npt, kvm_amd nested=1 and /dev/kvm.
CPU_KERNEL_ARGS = {"Opteron_G5": "noxsave"}
BOOT_TIMEOUT = float(os.environ.get("KVMQA_LAB_BOOT_TIMEOUT", 300))


class LabBootError(RuntimeError):
    """The lab host did not come up; the message names the timeout and ends with the console's tail."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """QEMU gets SIGTERM when the process that started it dies (even by SIGKILL): no lab host outlives
    its test."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LabHost:
    """One running lab host, as kvmqa and a person reach it: ssh://USER@127.0.0.1:PORT, strict host keys."""

    name: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    run_dir: Path
    console: Path
    process: subprocess.Popen[bytes] | None = None
    boot_seconds: float = 0.0
    started: float = 0.0  # time.monotonic() when QEMU was started
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, user: str | None = None) -> str:
        return f"ssh://{user or self.user}@127.0.0.1:{self.port}"

    def suite_args(self, user: str | None = None, sudo: bool = True) -> list[str]:
        """kvmqa's command-line options that reach this host."""
        return [
            "--hosts",
            self.url(user),
            *(["--sudo"] if sudo else []),
            "--ssh-identity-file",
            str(self.key),
            "--known-hosts",
            str(self.known_hosts),
        ]

    def ssh_argv(self, user: str | None = None) -> list[str]:
        return [
            "ssh",
            "-F",
            "none",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "LogLevel=ERROR",
            f"{user or self.user}@127.0.0.1",
        ]

    def run(
        self, cmd: str, *, user: str | None = None, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run one shell command on the lab host over plain OpenSSH (ground truth, independent of kvmqa).
        As the login user; prefix `sudo` for root, or pass user='root'."""
        proc = subprocess.run(
            [*self.ssh_argv(user), cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{self.name}: {cmd!r} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def sudo(self, cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(f"sudo sh -c {shlex.quote(cmd)}", **kw)  # type: ignore[arg-type]

    def console_tail(self, lines: int = 25) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, remove: bool = True) -> None:
        """Kill QEMU (the overlay is thrown away, so there is nothing to flush) and remove the overlay."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if remove:
            (self.run_dir / "overlay.qcow2").unlink(missing_ok=True)


def start(image: BuiltImage, run_dir: Path, *, timeout: float = BOOT_TIMEOUT, **kw: Any) -> LabHost:
    """Boot `image` in `run_dir` and wait until ssh answers and systemd has finished starting up."""
    host = launch(image, run_dir, **kw)
    finish_boot(host, timeout)
    return host


def _machine(arch: str, cpu: str) -> list[str]:
    """The emulator and machine for an image's architecture (Debian's names: amd64, arm64)."""
    if arch == "amd64":
        return [QEMU, "-accel", "tcg", "-cpu", cpu]
    if arch == "arm64":
        # `virt` at EL2 with GICv3: the guest kernel runs as a hypervisor (VHE) and KVM comes up inside.
        # pauth-impdef: QEMU's own pointer-authentication algorithm, much cheaper under TCG than QARMA.
        model = "max,pauth-impdef=on" if cpu == "max" else cpu
        return [
            QEMU_AARCH64,
            "-machine",
            "virt,virtualization=on,gic-version=3",
            "-accel",
            "tcg",
            "-cpu",
            model,
        ]
    raise ValueError(f"no lab machine for architecture {arch!r} (amd64, arm64)")


def launch(
    image: BuiltImage,
    run_dir: Path,
    *,
    name: str | None = None,
    cpu: str = "max",
    smp: int = 1,
    memory_mib: int = 3072,
    port: int | None = None,
    extra_append: str = "",
    extra_args: Sequence[str] = (),
) -> LabHost:
    """Start QEMU for `image` in `run_dir` (a fresh overlay) and return at once; `finish_boot` waits for it.
    QEMU dies with the thread that calls this (PR_SET_PDEATHSIG): call it from one that outlives the host.
    `extra_args` are more QEMU options (a multi-host lab's second NIC)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    overlay = run_dir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "raw", str(overlay)],
        check=True,
        capture_output=True,
    )
    port = port or _free_port()
    known = run_dir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {image.host_key}\n")
    console = run_dir / "console.log"
    console.unlink(missing_ok=True)
    name = name or image.spec.name
    arch = getattr(image.spec, "arch", "amd64")
    extra_append = f"{CPU_KERNEL_ARGS.get(cpu.split(',')[0], '')} {extra_append}".strip()
    console_dev = "ttyAMA0" if arch == "arm64" else "ttyS0"
    append = f"root=/dev/vda rw console={console_dev} systemd.show_status=1 {extra_append}".strip()
    argv = [
        *_machine(arch, cpu),
        "-name",
        f"kvmqa-lab-{name}",
        "-smp",
        str(smp),
        "-m",
        str(memory_mib),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        append,
        "-drive",
        f"file={overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev",
        f"user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n",
        *extra_args,
        "-display",
        "none",
        "-serial",
        f"file:{console}",
        "-monitor",
        "none",
        "-nodefaults",
        "-no-user-config",
    ]
    (run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
    t0 = time.monotonic()
    qemu_log = (run_dir / "qemu.log").open("wb")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )  # noqa: PLW1509 - only prctl, before exec
    qemu_log.close()
    (run_dir / "qemu.pid").write_text(f"{proc.pid}\n")
    return LabHost(name, port, image.spec.user, image.client_key, known, run_dir, console, proc, started=t0)


def finish_boot(host: LabHost, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait for a launched host to answer ssh with systemd up; on any failure (or Ctrl-C) stop it first."""
    try:
        wait_for_ssh(host, timeout, host.started)
    except BaseException:
        host.stop()
        raise
    host.boot_seconds = time.monotonic() - host.started


def wait_for_ssh(host: LabHost, timeout: float, t0: float) -> None:
    """Until `ssh true` works and `systemctl is-system-running --wait` returns (its answer is kept in
    timings)."""
    deadline = t0 + timeout
    last = ""
    while time.monotonic() < deadline:
        if not host.alive():
            qemu_log = (host.run_dir / "qemu.log").read_text(errors="replace").strip()
            raise LabBootError(
                f"lab host {host.name}: QEMU exited ({host.process.returncode if host.process else '?'}) "
                f"{qemu_log[-500:]}\nconsole tail:\n{host.console_tail()}"
            )
        try:  # before sshd runs, slirp accepts and ssh waits for a banner: never past the deadline
            proc = host.run("true", timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            last = "ssh true timed out"
            continue
        if proc.returncode == 0:
            host.timings["ssh"] = time.monotonic() - t0
            remaining = max(10.0, deadline - time.monotonic())
            state = host.run(
                f"timeout {int(remaining)} systemctl is-system-running --wait", timeout=remaining + 10
            )
            host.timings["systemd"] = time.monotonic() - t0
            host.timings["state:" + (state.stdout.strip() or "unknown")] = 1.0
            return
        last = proc.stderr.strip()
        time.sleep(2)
    raise LabBootError(
        f"lab host {host.name}: ssh on 127.0.0.1:{host.port} did not answer within the boot timeout "
        f"of {timeout:.0f} s (KVMQA_LAB_BOOT_TIMEOUT); last ssh error: {last or 'none'}\n"
        f"console tail ({host.console}):\n{host.console_tail()}"
    )


@contextlib.contextmanager
def boot(image: BuiltImage, run_dir: Path, **kw: object) -> Iterator[LabHost]:
    """A running lab host for the `with` block; stopped and its overlay removed afterwards, also on errors."""
    host = start(image, run_dir, **kw)  # type: ignore[arg-type]
    try:
        yield host
    finally:
        host.stop()
