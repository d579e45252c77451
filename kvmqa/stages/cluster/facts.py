"""The cluster's facts: what each host's own facts say that a cluster check compares (`digest`), and what only
the hosts can see of each other, measured by one sh script per host (`peer_script`, parsed by `parse_peers`).

    facts["hosts"]["lab1"]    -> {"arch": "x86_64", "vendor": "AuthenticAMD", "qemu": "7.2.0", ...}
    facts["missing"]["lab3"]  -> "unreachable: ssh: connect to host ... timed out"   (not judged, named)
    facts["cross"]["peers"]["lab1"]["lab2"] -> {"resolved": ["192.168.77.12"], "tcp": {"22": "open", ...},
    ...}

    >>> parse_peers("clock_start=10.5\\npeer|lab2|tcp|22|open\\nclock_end=11.0\\n")["peers"]["lab2"]["tcp"]
    {'22': 'open'}
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.facts import HostFacts

SSH_PORT = 22  # qemu+ssh's transport: what a source's libvirtd connects to first
DEFAULT_MIGRATION_PORT_MIN = 49152  # qemu.conf's migration_port_min when it is not set
TIME_DAEMONS = ("chronyd", "ntpd", "ntpsec", "openntpd", "systemd-timesyncd", "timesyncd")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def migration_port_min(facts: Mapping[str, Any]) -> int:
    """The first port of QEMU's incoming migration range on this host (qemu.conf, else libvirt's default)."""
    value = str(facts.get("libvirt_conf", {}).get("qemu_conf", {}).get("migration_port_min", ""))
    return int(value) if value.isdigit() else DEFAULT_MIGRATION_PORT_MIN


def host_model(domcaps_xml: str) -> dict[str, Any]:
    """The host-model CPU libvirt offers (domcapabilities `<mode name='host-model'>`): model, vendor,
    features."""
    mode = ET.fromstring(domcaps_xml).find("./cpu/mode[@name='host-model']")
    if mode is None or mode.get("supported") != "yes":
        return {"supported": False}
    return {
        "supported": True,
        "model": mode.findtext("model", ""),
        "vendor": mode.findtext("vendor", ""),
        "require": sorted(f.get("name", "") for f in mode.findall("feature") if f.get("policy") != "disable"),
        "disable": sorted(f.get("name", "") for f in mode.findall("feature") if f.get("policy") == "disable"),
    }


def host_model_cpu(domcaps_xml: str) -> str:
    """The host-model `<mode>` of a domcapabilities XML as the `<cpu>` element libvirt's baseline API takes
    (what
    `virsh hypervisor-cpu-baseline` extracts from concatenated domcapabilities); '' when there is none."""
    mode = ET.fromstring(domcaps_xml).find("./cpu/mode[@name='host-model']")
    if mode is None or mode.get("supported") != "yes":
        return ""
    cpu = ET.Element("cpu", {k: v for k, v in mode.attrib.items() if k not in ("name", "supported")})
    cpu.extend(list(mode))
    return ET.tostring(cpu, encoding="unicode")


def host_model_cpu_xml(model: Mapping[str, Any]) -> str:
    """A guest CPU definition equal to a host's host-model CPU (what a guest started with host-model gets)."""
    features = "".join(f"<feature policy='require' name='{f}'/>" for f in model.get("require", ()))
    features += "".join(f"<feature policy='disable' name='{f}'/>" for f in model.get("disable", ()))
    vendor = f"<vendor>{model['vendor']}</vendor>" if model.get("vendor") else ""
    head = f"<cpu mode='custom' match='exact'><model fallback='forbid'>{model['model']}</model>"
    return f"{head}{vendor}{features}</cpu>"


def cpu_of(xml: str) -> dict[str, Any]:
    """A `<cpu>` definition (a baseline libvirt computed): its model and the features it requires /
    disables."""
    cpu = ET.fromstring(xml)
    return {
        "model": cpu.findtext("model", ""),
        "vendor": cpu.findtext("vendor", ""),
        "require": sorted(
            f.get("name", "") for f in cpu.iter("feature") if f.get("policy", "require") == "require"
        ),
        "disable": sorted(f.get("name", "") for f in cpu.iter("feature") if f.get("policy") == "disable"),
    }


def time_daemon(facts: Mapping[str, Any]) -> str:
    """The time daemon running on the host ('' when none runs), from the processes the probe listed."""
    procs = set(facts.get("processes", []))
    return next((d for d in TIME_DAEMONS if d in procs), "")


def digest(name: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """What the cluster checks compare of one host, copied from its own facts (probe and libvirt stage)."""
    lv = facts.get("libvirt", {})
    caps = lv.get("capabilities", {})
    arch = caps.get("host_arch", "") or facts.get("kernel", {}).get("machine", "")
    kvm = lv.get("domcapabilities", {}).get("kvm", {})
    machines = caps.get("machine_types", {}).get(arch, [])
    return {
        "name": name,
        "hostname": lv.get("hostname") or facts.get("hostname", {}).get("hostname", ""),
        "addresses": sorted({a["address"] for a in facts.get("hostname", {}).get("local", [])}),
        "arch": arch,
        "vendor": facts.get("cpu", {}).get("vendor_id", ""),
        "cpu_model_name": facts.get("cpu", {}).get("model_name", ""),
        "os": facts.get("os", {}).get("pretty_name", ""),
        "libvirt": lv.get("lib_version", ""),
        "qemu": lv.get("hypervisor_version", ""),
        "default_machine": kvm.get("machine", ""),
        "machines": sorted({m["name"] for m in machines} | {m["canonical"] for m in machines}),
        "machine_aliases": {m["name"]: m["canonical"] for m in machines if m["canonical"] != m["name"]},
        "guests": lv.get("guests", []),
        "pools": lv.get("pools", []),
        "networks": lv.get("networks", []),
        "time_daemon": time_daemon(facts),
        "time_sync": facts.get("time_sync", {}),
        "migration_port_min": migration_port_min(facts),
    }


def missing_reason(facts: Mapping[str, Any] | None) -> str:
    """Why a host's facts cannot be judged ('' when they can): unreachable, or libvirt not connected."""
    if facts is None:
        return "no facts (the host was not probed in this run)"
    if facts.get("reach", {}).get("error"):
        return f"unreachable: {facts['reach']['error']}"
    lv = facts.get("libvirt")
    if not lv:
        return "its libvirt facts were not gathered (the libvirt stage did not run there)"
    if not lv.get("connected"):
        return f"libvirt not connected: {lv.get('error', 'no message')}"
    return ""


# -- the one round trip per host -----------------------------------------------------------------------------
TCP_PY = r"""
import socket, sys, threading
def probe(label, host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(float(sys.argv[1]))
    try:
        s.connect((host, int(port))); state = "open"
    except ConnectionRefusedError: state = "refused"
    except socket.timeout: state = "filtered"
    except OSError as e: state = "unreachable" if e.errno in (101, 113) else "error:" + (e.strerror or str(e))
    finally: s.close()
    lines.append("peer|%s|tcp|%s|%s" % (label, port, state))
threads, lines = [], []
for spec in sys.argv[2:]:
    label, host, port = spec.split(",")
    t = threading.Thread(target=probe, args=(label, host, port)); t.start(); threads.append(t)
for t in threads: t.join()
sys.stdout.write("".join(line + "\n" for line in lines))  # one write: threads' prints would interleave
"""


# A full-size don't-fragment packet without `ping`: UDP datagrams with DF set (IP_MTU_DISCOVER = DO) to a
# closed port of the peer; the peer's "port unreachable" (a refused recv) proves the datagram arrived. A small
# one first: when even that gets no answer (UDP or ICMP filtered), nothing is proven either way ("unknown").
DF_PY = r"""
import errno, socket, sys
host, size = sys.argv[1], int(sys.argv[2])
def send(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    df = (getattr(socket, "IP_MTU_DISCOVER", 10), getattr(socket, "IP_PMTUDISC_DO", 2))
    s.setsockopt(socket.IPPROTO_IP, *df)
    s.settimeout(2.0)
    try:
        s.connect((host, 33434)); s.send(b"\0" * n); s.recv(1); return "answered"
    except ConnectionRefusedError: return "arrived"
    except socket.timeout: return "silent"
    except OSError as e: return "too-big" if e.errno == errno.EMSGSIZE else "error"
    finally: s.close()
small = send(32)
if small != "arrived": print("unknown")
else: print("ok" if send(size) == "arrived" else "fail")
"""


def peer_script(
    peers: Sequence[tuple[str, str, Sequence[int]]], tcp_timeout: float = 3.0, trust_timeout: int = 60
) -> str:
    """The sh script one host runs (as root where the run uses sudo) about its peers, each (label, hostname,
    ports): its clock at start and end, each peer name resolved (getent), the route's device and MTU, a
    full-size don't-fragment packet (`ping -M do`, else UDP with DF set from python3: DF_PY), TCP to each
    port (python3, else bash's /dev/tcp: refused = reachable, a timeout = filtered) and
    `virsh -c qemu+ssh://root@PEER/system` in batch mode."""
    for label, hostname, _ in peers:
        if not (SAFE_NAME.match(label) and SAFE_NAME.match(hostname)):
            raise ValueError(f"peer name {label!r} / {hostname!r} is not a plain host name")
    lines = [
        "echo clock_start=$(date +%s.%N)",
        "echo user=$(id -un)",
        "d=$(mktemp -d /tmp/kvmqa-cluster.XXXXXX) || exit 1",
        "trap 'rm -rf \"$d\"' EXIT",
        "command -v ping >/dev/null 2>&1 && echo ping=yes || echo ping=absent",
        "specs=",
    ]
    for label, hostname, ports in peers:
        trust = (
            f"timeout {trust_timeout} virsh -c 'qemu+ssh://root@{hostname}/system?no_tty=1' -q version"
            f' </dev/null >"$d/trust-{label}" 2>&1; echo "rc=$?" >>"$d/trust-{label}"'
        )
        # the peer's clock straight over the migration network: five reads through one ssh connection, each
        # bracketed by this host's clock (the tightest bracket wins); needs root's trust, like the migration
        mux = f'ssh -o BatchMode=yes -o ControlPath="$d/mux-{label}" -o ConnectTimeout=20'
        clock = (
            f"{mux} -o ControlMaster=yes -o ControlPersist=30 -fN root@{hostname} "
            "</dev/null >/dev/null 2>&1 && "
            f"for i in 1 2 3 4 5; do t0=$(date +%s.%N); r=$({mux} root@{hostname} date +%s.%N </dev/null); "
            f't1=$(date +%s.%N); echo "peer|{label}|clock|$t0|$r|$t1"; done >"$d/clock-{label}"; '
            f"{mux} -O exit root@{hostname} 2>/dev/null"
        )
        lines += [
            f"( {trust} ) &",
            f"( {clock} ) &",
            f"a=$(getent ahostsv4 {hostname} | awk 'NR==1{{print $1}}'); [ -n \"$a\" ] || "
            f"a=$(getent hosts {hostname} | awk 'NR==1{{print $1}}')",
            f'echo "peer|{label}|resolve|'
            f"$(getent hosts {hostname} | awk '{{print $1}}' | sort -u | tr '\\n' ' ')\"",
            'if [ -n "$a" ]; then',
            '  r=$(ip -o route get "$a" 2>/dev/null | head -n1)',
            "  dev=$(echo \"$r\" | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')",
            '  mtu=$(cat /sys/class/net/"$dev"/mtu 2>/dev/null)',
            f'  echo "peer|{label}|route|$dev|$mtu|$(echo "$r" | sed -n \'s/.* src \\([^ ]*\\).*/\\1/p\')"',
            '  if command -v ping >/dev/null 2>&1 && [ -n "$mtu" ]; then',
            '    if ping -c 1 -W 2 -M do -s $((mtu - 28)) "$a" >/dev/null 2>&1;'
            f' then echo "peer|{label}|ping|ok|ping";'
            f' else echo "peer|{label}|ping|fail|ping"; fi',
            '  elif command -v python3 >/dev/null 2>&1 && [ -n "$mtu" ]; then',
            f'    df=$(python3 -c {shlex.quote(DF_PY)} "$a" $((mtu - 28)) 2>/dev/null)',
            f'    echo "peer|{label}|ping|$df|udp"',
            "  fi",
            f'  specs="$specs {" ".join(f"{label},$a,{p}" for p in ports)}"',
            "else",
            f'  echo "peer|{label}|route|||"',
            "fi",
        ]
    lines += [
        "if command -v python3 >/dev/null 2>&1; then",
        f'  [ -z "$specs" ] || python3 -c {shlex.quote(TCP_PY)} {tcp_timeout} $specs',
        "elif command -v bash >/dev/null 2>&1; then",
        "  for s in $specs; do",
        "    l=${s%%,*}; r=${s#*,}; h=${r%,*}; p=${r##*,}",
        f'    o=$(timeout {tcp_timeout} bash -c "exec 3<>/dev/tcp/$h/$p" 2>&1); rc=$?',
        "    if [ $rc = 0 ]; then st=open; elif [ $rc = 124 ]; then st=filtered;"
        ' elif echo "$o" | grep -q refused; then st=refused; else st="error:$o"; fi',
        '    echo "peer|$l|tcp|$p|$st"',
        "  done",
        "else echo tcp=absent; fi",
        "wait",
    ]
    for label, _, _ in peers:
        lines.append(
            f'echo "peer|{label}|trust|$(tail -n1 "$d/trust-{label}" | cut -d= -f2)|'
            f"$(grep -v '^rc=' \"$d/trust-{label}\" | tr '\\n|' '  ' | cut -c1-300)\""
        )
        lines.append(f'cat "$d/clock-{label}" 2>/dev/null')
    lines.append("echo clock_end=$(date +%s.%N)")
    return "\n".join(lines) + "\n"


def parse_peers(text: str) -> dict[str, Any]:
    """The script's output -> {"clock_start", "clock_end", "user", "ping", "tcp_tool", "peers": {label:
    {...}}}."""
    out: dict[str, Any] = {"peers": {}, "ping": "absent"}
    for line in text.splitlines():
        if line.startswith("peer|"):
            parts = line.split("|")
            peer = out["peers"].setdefault(parts[1], {"tcp": {}})
            kind, rest = parts[2], parts[3:]
            if kind == "resolve":
                peer["resolved"] = rest[0].split() if rest else []
            elif kind == "route" and len(rest) >= 3:
                peer["device"], peer["mtu"], peer["source"] = (
                    rest[0],
                    int(rest[1]) if rest[1].isdigit() else None,
                    rest[2],
                )
            elif kind == "tcp" and len(rest) >= 2:
                peer["tcp"][rest[0]] = "|".join(rest[1:])
            elif kind == "ping" and rest:
                peer["ping"] = rest[0] or "unknown"
                peer["df_via"] = rest[1] if len(rest) > 1 else "ping"
            elif kind == "clock" and len(rest) >= 3:
                try:
                    peer.setdefault("clock", []).append([float(rest[0]), float(rest[1]), float(rest[2])])
                except ValueError:
                    pass
            elif kind == "trust" and len(rest) >= 2:
                peer["trust"] = {"rc": int(rest[0]) if rest[0].isdigit() else None, "output": rest[1].strip()}
        elif "=" in line:
            key, _, value = line.partition("=")
            if key in ("clock_start", "clock_end"):
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = None
            elif key in ("user", "ping", "tcp"):
                out[key if key != "tcp" else "tcp_tool"] = value.strip()
    return out


def clock_offset(parsed: Mapping[str, Any], sent: float, received: float) -> dict[str, Any]:
    """The host's clock against the controller's: the script's end happened, on the controller's clock,
    between
    `sent` + the script's own run time and `received`; the offset is taken at the middle, ± half that
    window."""
    start, end = parsed.get("clock_start"), parsed.get("clock_end")
    if start is None or end is None:
        return {"error": "the host printed no clock"}
    earliest, latest = sent + max(end - start, 0.0), received
    middle = (earliest + latest) / 2
    return {
        "offset_s": round(end - middle, 4),
        "uncertainty_s": round(max(latest - earliest, 0.0) / 2, 4),
        "script_s": round(end - start, 3),
        "round_trip_s": round(received - sent, 3),
    }


def peer_offset(samples: Sequence[Sequence[float]]) -> dict[str, float] | None:
    """A peer's clock against this host's from (before, peer's clock, after) reads: the tightest bracket's
    middle,
    ± half of it (None without a sample)."""
    if not samples:
        return None
    before, theirs, after = min(samples, key=lambda s: s[2] - s[0])
    return {
        "offset_s": round(theirs - (before + after) / 2, 4),
        "uncertainty_s": round((after - before) / 2, 4),
    }


@dataclass(frozen=True)
class Cluster:
    """facts["cluster"], what the checks read: every host's digest (`digest`), the hosts not judged and why,
    the run's hosts in order, and what the hosts measured of each other (plain data: cross["peers"][a][b])."""

    SECTION: ClassVar[str] = "cluster"
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    cross: dict[str, Any] = field(default_factory=dict)
    # set when the facts come from the hosts' probe outputs alone (the Ansible path): nothing was measured
    # between the hosts, and this says where the facts came from
    offline: str = ""


def cluster_facts(
    hosts: Mapping[str, Mapping[str, Any]], missing: Mapping[str, str], cross: Mapping[str, Any]
) -> HostFacts:
    """The facts the cluster checks read: every host's digest, the hosts not judged (and why), the cross
    ones."""
    return HostFacts(hosts=dict(hosts), missing=dict(missing), cross=dict(cross))


def from_probe_outputs(
    names: Sequence[str], facts_of: Mapping[str, Mapping[str, Any] | None], source: str
) -> dict[str, Any]:
    """The cluster's facts from each host's own facts alone (the Ansible path: one probe output per host,
    nothing measured between them): the digests, the hosts not judged and why, and `offline` = `source`,
    so the checks that need a measurement between the hosts say so instead of deciding."""
    hosts: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in names:
        facts = facts_of.get(name)
        why = missing_reason(facts)
        if why or facts is None:
            missing[name] = why
        else:
            hosts[name] = digest(name, facts)
    return {"hosts": hosts, "missing": missing, "members": list(names), "cross": {}, "offline": source}
