"""A lab of several KVM hosts on one private segment, and the cluster set-up an admin gives such hosts.

    with boot_lab([HostPlan("bookworm"), HostPlan("trixie", "Opteron_G5")], run_dir) as lab:
        setup_cluster(lab)                  # trust for qemu+ssh, the shared NFS pool, the same guest network
        lab["lab1"].sudo("virsh -c qemu+ssh://root@lab2/system version")
        teardown_cluster(lab)               # removes every kvmqa-... thing set_up created

The segment is a VDE switch on a unix socket in the run directory (`vde_switch` from Debian's `vde2`); each
host's second NIC (`52:54:00:77:00:0N`) is plugged into it, so the hosts' packets never leave QEMU and the
switch except as unix-socket traffic. Inside, host N is `labN` at 192.168.77.(10+N)/24 (a systemd-networkd
.network file matched by MAC, no gateway), every host's /etc/hosts names all of them, and each host gets host
keys of its own (the image's are shared by every boot of it). Nothing else routes anywhere.

Hosts boot at most `parallel` (2) at a time, each `-smp 1`. QEMU and the switch die with the thread that
started them and are stopped, with their overlays and sockets, when the `with` block ends, also on errors
and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree

from tests.lab.boot import BOOT_TIMEOUT, LabBootError, LabHost, _die_with_parent, finish_boot, launch
from tests.lab.image import LAB_IMAGES, BuiltImage, build_image
from tests.lab.image_arm64 import ALL_IMAGES

T = TypeVar("T")
R = TypeVar("R")

SEGMENT_PREFIX = "192.168.77"
SHARED_POOL = "kvmqa-shared"
SHARED_EXPORT = "/srv/kvmqa-shared"
SHARED_TARGET = "/var/lib/libvirt/kvmqa-shared"
GUEST_NETWORK = "kvmqa-lab"
KEY_TAG = "kvmqa-cluster"  # the comment on every key and known_hosts line set-up adds (never the lab's own)
CPUS_WITH_SVM_NPT = ("max", "EPYC", "Opteron_G5")  # under TCG; qemu64 and Opteron_G3 lack npt

NETWORK_XML = f"""<network>
  <name>{GUEST_NETWORK}</name>
  <bridge name='kvmqa-lab0' stp='on' delay='0'/>
  <ip address='192.168.177.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.177.100' end='192.168.177.199'/>
    </dhcp>
  </ip>
</network>
"""

POOL_XML = f"""<pool type='netfs'>
  <name>{SHARED_POOL}</name>
  <source>
    <host name='lab1'/>
    <dir path='{SHARED_EXPORT}'/>
    <format type='nfs'/>
  </source>
  <target>
    <path>{SHARED_TARGET}</path>
  </target>
</pool>
"""


def lab_name(index: int) -> str:
    return f"lab{index}"


def segment_address(index: int) -> str:
    return f"{SEGMENT_PREFIX}.{10 + index}"


def segment_mac(index: int) -> str:
    return f"52:54:00:77:00:{index:02x}"


@dataclass(frozen=True)
class HostPlan:
    """One host of a lab: its Debian release and the CPU model QEMU gives it."""

    suite: str = "bookworm"
    cpu: str = "max"


def plan_hosts(count: int, suites: str = "bookworm", cpus: str = "max") -> list[HostPlan]:
    """`--hosts N --suite a,b --cpu x,y` as plans: one value applies to every host, else one per host."""

    def spread(option: str, text: str, allowed: Sequence[str]) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if len(values) == 1:
            values *= count
        if len(values) != count:
            raise ValueError(f"--{option} {text!r}: give one value or {count} (one per host)")
        if bad := [v for v in values if v not in allowed]:
            raise ValueError(f"--{option}: {', '.join(bad)} not one of {', '.join(allowed)}")
        return values

    if count < 1:
        raise ValueError("--hosts must be at least 1")
    return [
        HostPlan(s, c)
        for s, c in zip(
            # one host may be of any architecture; a cluster's are x86 (its segment, NFS, migration)
            spread("suite", suites, sorted(ALL_IMAGES if count == 1 else LAB_IMAGES)),
            spread("cpu", cpus, CPUS_WITH_SVM_NPT),
            strict=True,
        )
    ]


def in_parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """fn over items, one daemon thread each (ssh waits, not CPU); the first error is raised after all end.
    Ctrl-C reaches the caller at once: the threads are daemons and end with the hosts they poll."""
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = fn(items[i])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


class Segment:
    """A VDE switch on a unix socket: the lab's private Ethernet. It ends when its stdin closes (our exit)."""

    def __init__(self, run_dir: Path) -> None:
        if shutil.which("vde_switch") is None:
            raise LabBootError("a multi-host lab needs vde_switch (apt-get install vde2)")
        self.sock = run_dir / "segment"
        shutil.rmtree(self.sock, ignore_errors=True)
        log = (run_dir / "segment.log").open("wb")
        self.process = subprocess.Popen(
            ["vde_switch", "--sock", str(self.sock), "--numports", "32"],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # noqa: PLW1509 - only prctl
        log.close()
        deadline = time.monotonic() + 10
        while not (self.sock / "ctl").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (run_dir / "segment.log").read_text()[-500:]
                raise LabBootError(f"vde_switch did not start: {log_text}")
            time.sleep(0.1)

    def nic(self, index: int) -> list[str]:
        """QEMU options for host `index`'s second NIC, plugged into this switch."""
        return [
            "-netdev",
            f"vde,id=seg,sock={self.sock}",
            "-device",
            f"virtio-net-pci,netdev=seg,mac={segment_mac(index)}",
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.sock, ignore_errors=True)


@dataclass
class Lab:
    """Running lab hosts lab1..labN on one segment; `lab["lab2"]` or `lab.hosts[1]`."""

    hosts: list[LabHost]
    plans: list[HostPlan]
    images: dict[str, BuiltImage]
    segment: Segment
    run_dir: Path
    timings: dict[str, float] = field(default_factory=dict)  # join, cluster, teardown: seconds

    def __getitem__(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def describe(self, index: int) -> str:
        plan = self.plans[index]
        return f"{self.hosts[index].name} ({plan.suite}, -cpu {plan.cpu})"

    def write_inventory(self, path: Path) -> Path:
        """A kvmqa inventory (YAML): every host as qa with sudo, through its own key and known_hosts."""
        hosts = [
            {
                "name": h.name,
                "address": "127.0.0.1",
                "port": h.port,
                "user": h.user,
                "sudo": True,
                "identity_file": str(h.key),
                "known_hosts": str(h.known_hosts),
            }
            for h in self.hosts
        ]
        path.write_text(json.dumps({"hosts": hosts}, indent=1) + "\n")  # JSON is YAML
        return path

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        self.segment.stop()


def start_lab(
    plans: Sequence[HostPlan],
    run_dir: Path,
    *,
    timeout: float = BOOT_TIMEOUT,
    parallel: int = 2,
    memory_mib: int = 3072,
    say: Callable[[str], None] = print,
) -> Lab:
    """Build (or find) the images, boot lab1..labN on a new segment, `parallel` at a time, and join them.
    Call from a thread that outlives the lab (QEMU dies with the thread that started it)."""
    images = {p.suite: build_image(LAB_IMAGES[p.suite], log=say) for p in plans}
    run_dir.mkdir(parents=True, exist_ok=True)
    lab = Lab([], list(plans), images, Segment(run_dir), run_dir)
    try:
        for first in range(0, len(plans), parallel):
            batch = []
            for index in range(first + 1, min(first + parallel, len(plans)) + 1):
                plan = plans[index - 1]
                name = lab_name(index)
                say(f"booting {name} ({plan.suite}, -cpu {plan.cpu}) ...")
                host = launch(
                    images[plan.suite],
                    run_dir / name,
                    name=name,
                    cpu=plan.cpu,
                    smp=1,
                    memory_mib=memory_mib,
                    extra_args=lab.segment.nic(index),
                )
                lab.hosts.append(host)
                batch.append(host)
            in_parallel(lambda h: finish_boot(h, timeout), batch)
            for host in batch:
                say(
                    f"{host.name} answers ssh after {host.timings['ssh']:.0f} s, "
                    f"systemd up after {host.boot_seconds:.0f} s"
                )
        t0 = time.monotonic()
        join_segment(lab)
        lab.timings["join"] = time.monotonic() - t0
    except BaseException:
        lab.stop()
        raise
    return lab


@contextlib.contextmanager
def boot_lab(plans: Sequence[HostPlan], run_dir: Path, **kw: object) -> Iterator[Lab]:
    """A running lab for the `with` block; every host, overlay and the segment gone afterwards."""
    lab = start_lab(plans, run_dir, **kw)  # type: ignore[arg-type]
    try:
        yield lab
    finally:
        lab.stop()


def _put(path: str, text: str, mode: str = "644", owner: str = "root") -> str:
    """Shell that writes `text` to `path` (as root), with mode and owner."""
    return (
        f"install -m {mode} -o {owner} -g {owner} /dev/null {path} && "
        f"printf %s {shlex.quote(text)} > {path}\n"
    )


def _hosts_lines(count: int) -> str:
    return "".join(f"{segment_address(i)}\t{lab_name(i)}\t# lab segment\n" for i in range(1, count + 1))


def join_segment(lab: Lab) -> None:
    """Each host as an admin sets it up: its name, its own host keys, a static address on the segment's NIC
    (by MAC), every lab name in /etc/hosts. The local known_hosts follows the new host key."""
    count = len(lab.hosts)

    def join(index: int) -> None:
        host, name, address = lab.hosts[index - 1], lab_name(index), segment_address(index)
        network = (
            f"[Match]\nMACAddress={segment_mac(index)}\n\n[Network]\nAddress={address}/24\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
        script = (
            "set -e\n"
            f"hostnamectl set-hostname {name}\n"
            + _put("/etc/systemd/network/10-lab-segment.network", network)
            + "sed -i '/# lab segment$/d' /etc/hosts\n"
            f"printf %s {shlex.quote(_hosts_lines(count))} >> /etc/hosts\n"
            "networkctl reload\n"
            "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\n"
            "ssh-keygen -A >/dev/null\n"
            "systemctl reload ssh\n"
            f"for i in $(seq 60); do ip -4 -o addr | grep -q ' {address}/24 ' && break; sleep 0.5; done\n"
            f"ip -4 -o addr | grep -q ' {address}/24 ' || {{ echo 'no {address} on the segment NIC' >&2; "
            "networkctl status >&2; exit 1; }\n"
            "cat /etc/ssh/ssh_host_ed25519_key.pub\n"
        )
        key = " ".join(host.sudo(script, check=True, timeout=180).stdout.split()[:2])
        if not key.startswith("ssh-ed25519 "):
            raise LabBootError(f"{name}: no new ed25519 host key read back ({key!r})")
        host.known_hosts.write_text(f"[127.0.0.1]:{host.port} {key}\n")
        host.name = name

    in_parallel(join, range(1, count + 1))


def _on_all(lab: Lab, script: Callable[[int, LabHost], str], timeout: float = 300) -> list[str]:
    """Run a root script on every host at once (script(index, host)); their outputs, in host order."""
    return in_parallel(
        lambda i: lab.hosts[i - 1].sudo(script(i, lab.hosts[i - 1]), check=True, timeout=timeout).stdout,
        range(1, len(lab.hosts) + 1),
    )


USERS = {"root": "/root", "qa": "/home/qa"}


def setup_cluster(lab: Lab) -> float:
    """What a cluster needs, as an admin sets it up, over ssh; idempotent. Returns the seconds it took.
    - trust for qemu+ssh: root and qa of every host have a key, authorized on every host for the same user,
      and known_hosts entries for every lab name and segment address, every host key type (as ssh-keyscan
      gives them: ssh's UpdateHostKeys then has nothing to add), tagged `kvmqa-cluster`;
    - NFS: lab1 exports /srv/kvmqa-shared to the segment; every host mounts it as the libvirt netfs pool
      kvmqa-shared (autostart);
    - the guest network kvmqa-lab, one definition on every host (isolated: no forward), active, autostart."""
    t0 = time.monotonic()

    def keys(index: int, host: LabHost) -> str:
        return (
            "set -e\n"
            + "".join(
                f"[ -f {home}/.ssh/id_ed25519 ] || su -s /bin/sh {user} -c \"ssh-keygen -q -t ed25519 -N '' "
                f"-C '{KEY_TAG} {user}@{lab_name(index)}' -f {home}/.ssh/id_ed25519\"\n"
                f"printf '{user} '; cat {home}/.ssh/id_ed25519.pub\n"
                for user, home in USERS.items()
            )
            + "for k in /etc/ssh/ssh_host_*_key.pub; do printf 'hostkey '; cat $k; done\n"
        )

    found: dict[str, list[str]] = {user: [] for user in (*USERS, "hostkey")}
    for index, out in enumerate(_on_all(lab, keys), start=1):
        for line in out.splitlines():
            who, key = line.split(" ", 1)
            if who == "hostkey":
                key = f"{lab_name(index)},{segment_address(index)} {' '.join(key.split()[:2])} {KEY_TAG}"
            found[who].append(key.strip())

    def trust_export_network(index: int, host: LabHost) -> str:
        script = "set -e\n"
        for user, home in USERS.items():
            for name, lines in (("authorized_keys", found[user]), ("known_hosts", found["hostkey"])):
                path = f"{home}/.ssh/{name}"
                script += f"[ -f {path} ] || install -m 600 -o {user} -g {user} /dev/null {path}\n"
                script += "".join(
                    f"grep -qxF {q} {path} || echo {q} >> {path}\n" for q in map(shlex.quote, lines)
                )
        if index == 1:
            export = f"{SHARED_EXPORT} {SEGMENT_PREFIX}.0/24(rw,sync,no_subtree_check,no_root_squash)\n"
            script += (
                f"mkdir -p {SHARED_EXPORT} /etc/exports.d\n"
                + _put("/etc/exports.d/kvmqa-shared.exports", export)
                + "systemctl enable --now nfs-server >/dev/null 2>&1\nexportfs -ra\n"
            )
        return script + _define("net", GUEST_NETWORK, NETWORK_XML)

    _on_all(lab, trust_export_network)
    _on_all(lab, lambda i, h: _define("pool", SHARED_POOL, POOL_XML, build=True))
    lab.timings["cluster"] = time.monotonic() - t0
    return lab.timings["cluster"]


def _define(kind: str, name: str, xml: str, build: bool = False) -> str:
    """Shell that defines, (builds,) starts and autostarts a libvirt network or pool unless it already is."""
    tmp = f"/tmp/{name}-{kind}.xml"
    return (
        f"if ! virsh -q {kind}-info {name} >/dev/null 2>&1; then\n"
        + _put(tmp, xml, "600")
        + f"virsh -q {kind}-define {tmp} >/dev/null; rm -f {tmp}\n"
        + (f"virsh -q pool-build {name} >/dev/null\n" if build else "")
        + "fi\n"
        f"virsh -q {kind}-info {name} | grep -Eq '^(Active|State):.*(yes|running)' || "
        f"virsh -q {kind}-start {name} >/dev/null\n"
        f"virsh -q {kind}-autostart {name} >/dev/null\n"
    )


def teardown_cluster(lab: Lab) -> float:
    """Remove what setup_cluster made: the pool (unmounted, its mount point), the guest network, lab1's export
    and its directory, the keys and known_hosts lines tagged kvmqa-cluster. Idempotent; returns seconds."""
    t0 = time.monotonic()

    def undo(index: int, host: LabHost) -> str:
        script = ""
        for kind, name in (("pool", SHARED_POOL), ("net", GUEST_NETWORK)):
            delete = f"  virsh -q pool-delete {name} >/dev/null 2>&1 || true\n" if kind == "pool" else ""
            script += (
                f"if virsh -q {kind}-info {name} >/dev/null 2>&1; then\n"
                f"  virsh -q {kind}-destroy {name} >/dev/null 2>&1 || true\n{delete}"
                f"  virsh -q {kind}-undefine {name} >/dev/null\nfi\n"
            )
        peers = " ".join(f"{lab_name(i)} {segment_address(i)}" for i in range(1, len(lab.hosts) + 1))
        for home in USERS.values():
            ssh = f"{home}/.ssh"
            script += (
                f"sed -i '/ {KEY_TAG}\\( \\|$\\)/d' {ssh}/authorized_keys {ssh}/known_hosts "
                "2>/dev/null || true\n"
                # what ssh learnt on its own about the peers (hashed), and the backups it made
                f"[ -f {ssh}/known_hosts ] && for p in {peers}; do "
                f"ssh-keygen -q -R $p -f {ssh}/known_hosts >/dev/null 2>&1; done\n"
                f"rm -f {ssh}/known_hosts.old\n"
                f"grep -qs ' {KEY_TAG} ' {home}/.ssh/id_ed25519.pub && "
                f"rm -f {home}/.ssh/id_ed25519 {home}/.ssh/id_ed25519.pub\n"
            )
        return script + "true\n"

    _on_all(lab, undo)
    lab.hosts[0].sudo(
        f"rm -f /etc/exports.d/kvmqa-shared.exports; exportfs -ra; rm -rf {SHARED_EXPORT}",
        check=True,
        timeout=120,
    )
    lab.timings["teardown"] = time.monotonic() - t0
    return lab.timings["teardown"]


def leftovers(host: LabHost) -> list[str]:
    """Whatever named kvmqa-... is on the host now (libvirt objects, mounts, links, exports, tagged keys), and
    known_hosts entries for lab names (as `kvmqa-trust FILE NAME: ...`)."""
    out = host.sudo(
        "virsh -q list --all --name; virsh -q net-list --all --name;"
        " virsh -q pool-list --all --name; findmnt -rn -o TARGET; ip -o link;"
        " ls -1 /etc/exports.d /srv 2>/dev/null; exportfs -v 2>/dev/null;"
        f" cat /root/.ssh/* /home/qa/.ssh/* 2>/dev/null | grep -h '{KEY_TAG}';"
        " for f in /root/.ssh/known_hosts /home/qa/.ssh/known_hosts; do"
        " for p in $(seq -f lab%g 1 9); do"
        ' ssh-keygen -F $p -f $f | sed "s|^|kvmqa-trust $f $p: |"; done; done; true',
        timeout=120,
    ).stdout
    return [line.strip() for line in out.splitlines() if "kvmqa-" in line and "kvmqa-repo" not in line]


@dataclass
class CpuFacts:
    baseline_xml: str  # the baseline of the first host that could compute one ('' if none)
    computed_on: str  # that host
    model: str
    features: list[str]  # policy='require'
    disabled: list[str]  # policy='disable'
    baselines: dict[str, tuple[int, str]]  # host -> (exit status, its baseline XML or its error)
    compare: dict[str, tuple[int, str]]  # host -> (exit status, hypervisor-cpu-compare's sentence)
    versions: dict[str, str]  # host -> `virsh version --daemon` over qemu+ssh from lab1


def cpu_facts(lab: Lab) -> CpuFacts:
    """From lab1, as root over qemu+ssh: every host's domcapabilities concatenated; the migratable baseline of
    them (`hypervisor-cpu-baseline --features --migratable`) as each host's libvirt computes it (an older
    libvirt may not know a newer one's features); each host's `hypervisor-cpu-compare --error` of the first
    baseline that was computed."""
    first = lab.hosts[0]
    uris = {name: f"qemu+ssh://root@{name}/system" for name in lab.names}
    caps = "; ".join(f"virsh -c {uri} domcapabilities" for uri in uris.values())
    first.sudo(f"set -e; {{ {caps}; }} > /tmp/kvmqa-caps.xml", check=True, timeout=300)
    baselines: dict[str, tuple[int, str]] = {}
    for name, uri in uris.items():
        proc = first.sudo(
            f"virsh -c {uri} hypervisor-cpu-baseline --features --migratable /tmp/kvmqa-caps.xml", timeout=180
        )
        baselines[name] = (proc.returncode, proc.stdout if proc.returncode == 0 else proc.stderr.strip())
    computed_on, baseline = next(((n, xml) for n, (rc, xml) in baselines.items() if rc == 0), ("", ""))
    compare: dict[str, tuple[int, str]] = {}
    model, features, disabled = "", [], []
    if baseline:
        cpu = ElementTree.fromstring(baseline)
        model = cpu.findtext("model", "").strip()
        features = [f.get("name", "") for f in cpu.iter("feature") if f.get("policy", "require") == "require"]
        disabled = [f.get("name", "") for f in cpu.iter("feature") if f.get("policy") == "disable"]
        first.sudo(_put("/tmp/kvmqa-baseline.xml", baseline), check=True)
        for name, uri in uris.items():
            proc = first.sudo(
                f"virsh -c {uri} hypervisor-cpu-compare --error /tmp/kvmqa-baseline.xml", timeout=180
            )
            compare[name] = (proc.returncode, (proc.stdout + proc.stderr).strip())
    versions = {
        name: first.sudo(f"virsh -c {uri} version --daemon", check=True, timeout=120).stdout.strip()
        for name, uri in uris.items()
    }
    first.sudo("rm -f /tmp/kvmqa-caps.xml /tmp/kvmqa-baseline.xml", timeout=60)
    return CpuFacts(baseline, computed_on, model, features, disabled, baselines, compare, versions)
