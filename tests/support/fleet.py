"""A fleet on one machine: several real sshd targets on loopback, plus the bad hosts a fleet always has.

    fleet = start_fleet(workdir, 3)            # three good ssh targets, one known_hosts file
    fleet.hosts_arg(unreachable=True, wrong_key=True)   # --hosts value with the bad ones added
    fleet.args()                               # --sudo --ssh-identity-file ... --known-hosts ...
    fleet.stop()

A "changed" host (for baseline comparisons) is an sshd in its own mount namespace whose view of the
machine differs: a CPU flag gone from /proc/cpuinfo, a package version bumped in the dpkg database and
libvirt's socket directory hidden. Nothing outside that namespace changes, so concurrent runs are safe.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.sshd import CI_USER, SSHD, Sshd, client_key, free_port, start_sshd


@dataclass
class Fleet:
    workdir: Path
    key: Path
    servers: list[Sshd] = field(default_factory=list)
    known_hosts: Path | None = None
    closed_port: int = 0
    _silent: Any = None

    def urls(self) -> list[str]:
        return [s.url() for s in self.servers]

    def names(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.servers]

    @property
    def unreachable_url(self) -> str:
        return f"ssh://{CI_USER}@127.0.0.1:{self.closed_port}"

    @property
    def wrong_key_url(self) -> str:
        return f"ssh://{CI_USER}@127.0.0.1:{self.wrong_key_server.port}"

    @property
    def wrong_key_server(self) -> Sshd:
        return self._wrong_key

    @property
    def silent_url(self) -> str:
        """A port that accepts TCP connections and never says a word: ssh waits for its connect timeout."""
        if self._silent is None:
            import socket

            self._silent = socket.socket()
            self._silent.bind(("127.0.0.1", 0))
            self._silent.listen(64)  # the kernel completes handshakes; nobody ever accepts or answers
        return f"ssh://{CI_USER}@127.0.0.1:{self._silent.getsockname()[1]}"

    def hosts_arg(self, *, unreachable: bool = False, wrong_key: bool = False, silent: bool = False) -> str:
        urls = self.urls()
        if wrong_key:
            urls.append(self.wrong_key_url)
        if unreachable:
            urls.append(self.unreachable_url)
        if silent:
            urls.append(self.silent_url)
        return ",".join(urls)

    def args(self) -> list[str]:
        return [
            "--sudo",
            "--ssh-identity-file",
            str(self.key),
            "--known-hosts",
            str(self.known_hosts),
            "--connect-timeout",
            "5",
        ]

    def stop(self) -> None:
        for s in [*self.servers, getattr(self, "_wrong_key", None)]:
            if s is not None:
                s.stop()
        if self._silent is not None:
            self._silent.close()


def start_fleet(workdir: Path, count: int, *, wrong_key: bool = False) -> Fleet:
    """`count` good targets (and, with wrong_key, one whose host key does not match known_hosts)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = client_key(workdir)
    fleet = Fleet(workdir, key)
    for _ in range(count):
        fleet.servers.append(start_sshd(workdir, key))
    lines = [s.known_hosts.read_text() for s in fleet.servers]
    if wrong_key:
        bad = start_sshd(workdir, key)
        fleet._wrong_key = bad  # type: ignore[attr-defined]
        # known_hosts claims another server's key for this address: a man in the middle, as ssh sees it
        lines.append(
            fleet.servers[0].known_hosts.read_text().replace(f"]:{fleet.servers[0].port} ", f"]:{bad.port} ")
        )
    fleet.known_hosts = workdir / "fleet_known_hosts"
    fleet.known_hosts.write_text("".join(lines))
    fleet.closed_port = free_port()  # bound and released: nothing listens there
    return fleet


# -- a changed host, for baselines -----------------------------------------------------------------


@dataclass
class ChangedView:
    """What the namespaced sshd's host looks like compared with the real one."""

    flag_removed: str
    package: str
    old_version: str
    new_version: str


def start_changed_sshd(base: Sshd, workdir: Path) -> tuple[Sshd, ChangedView]:
    """Restart `base`'s port as an sshd in a private mount namespace where the host looks upgraded and broken.

    Same port, host key and known_hosts line as `base` (stopped first), so the host keeps its name.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M)
    assert flags, "no flags line in /proc/cpuinfo"
    flag = next(f for f in ("aes", "sse4_2", "avx", "pclmulqdq", "ssse3") if f in flags.group(1).split())
    (workdir / "cpuinfo").write_text(re.sub(rf"(?m)^(flags\s*:.*?) {flag}\b", r"\1", cpuinfo))
    status = Path("/var/lib/dpkg/status").read_text()
    package = "libvirt-clients"
    m = re.search(rf"(?ms)^Package: {package}\n.*?^Version: (\S+)$", status)
    assert m, f"{package} is not installed"
    old = m.group(1)
    new = old + "+kvmqa1"
    (workdir / "dpkg-status").write_text(status[: m.start(1)] + new + status[m.end(1) :])
    (workdir / "empty-run-libvirt").mkdir(exist_ok=True)
    base.stop()
    config = base.workdir / f"sshd_config_{base.port}"
    script = (
        f"mount --bind {workdir / 'cpuinfo'} /proc/cpuinfo && "
        f"mount --bind {workdir / 'dpkg-status'} /var/lib/dpkg/status && "
        f"mount --bind {workdir / 'empty-run-libvirt'} /run/libvirt && "
        f"exec {SSHD} -D -e -f {config}"
    )
    log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _wait_port(base.port, proc, workdir / "sshd.log")
    server = Sshd(base.port, base.workdir, base.client_key, base.known_hosts, base.user, proc)
    return server, ChangedView(flag, package, old, new)


def restart_plain_sshd(base: Sshd) -> Sshd:
    """The same port served by an ordinary sshd again (after start_changed_sshd)."""
    base.stop()
    config = base.workdir / f"sshd_config_{base.port}"
    log = open(base.workdir / f"sshd_{base.port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    _wait_port(base.port, proc, base.workdir / f"sshd_{base.port}.log")
    return Sshd(base.port, base.workdir, base.client_key, base.known_hosts, base.user, proc)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd on port {port} did not come up")


def drop_ssh_master(server: Sshd, known_hosts: Path | None) -> None:
    """Close kvmqa's multiplexed connection (ControlPersist) to one server, so a restarted server is reached
    anew.
    `known_hosts`: the file the runs used (it is part of kvmqa's ControlPath)."""
    from kvmqa.transport.target import Target

    target = Target.from_url(server.url(), known_hosts=known_hosts)
    subprocess.run(
        [
            "ssh",
            "-o",
            f"ControlPath={target.transport.control_path}",
            "-p",
            str(server.port),
            f"{server.user}@127.0.0.1",
            "-O",
            "exit",
        ],
        capture_output=True,
        timeout=10,
    )


class DelayProxy:
    """TCP forwarders that hold every chunk `delay` seconds each way: a WAN round trip on loopback.

    (tc netem needs the sch_netem kernel module, which this kind of machine may not have.)
    One asyncio loop in a daemon thread serves every forwarded port.
    """

    def __init__(self, delay_s: float) -> None:
        import asyncio
        import threading

        self.delay = delay_s
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def forward(self, target_port: int) -> int:
        """A new local port whose connections reach `target_port` with the delay."""
        import asyncio

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def send() -> None:
                while True:
                    at, data = await queue.get()
                    await asyncio.sleep(max(0.0, at - self.loop.time()))
                    if not data:
                        writer.close()
                        return
                    writer.write(data)
                    await writer.drain()

            task = asyncio.ensure_future(send())
            try:
                while True:
                    data = await reader.read(65536)
                    queue.put_nowait((self.loop.time() + self.delay, data))
                    if not data:
                        break
                await task
            except (ConnectionError, OSError):
                task.cancel()

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                client_w.close()
                return
            try:
                await asyncio.gather(
                    pump(client_r, server_w), pump(server_r, client_w), return_exceptions=True
                )
            except asyncio.CancelledError:
                pass  # close(): end quietly (asyncio logs a traceback for a cancelled connection handler)
            finally:
                client_w.close()
                server_w.close()

        async def start() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        import asyncio

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def behind_delay(fleet: Fleet, rtt_ms: float) -> DelayProxy:
    """Put every server of `fleet` behind a DelayProxy (RTT rtt_ms): urls, names and known_hosts follow."""
    proxy = DelayProxy(rtt_ms / 2000)
    lines = []
    for server in fleet.servers:
        port = proxy.forward(server.port)
        lines.append(server.known_hosts.read_text().replace(f"]:{server.port} ", f"]:{port} "))
        server.port = port  # the address the fleet is reached at from now on
    assert fleet.known_hosts is not None
    fleet.known_hosts.write_text("".join(lines))
    return proxy


def have_unshare() -> bool:
    return (
        shutil.which("unshare") is not None
        and subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
        ).returncode
        == 0
    )
