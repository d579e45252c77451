"""Fleet runs through Ansible (ansible/kvmqa.yml): the probe travels with Ansible, the verdicts come from
kvmqa.

    python -m kvmqa probe-script --out-dir DIR --hosts-groups '{"hv1": ["kvm_hosts"]}'   # -> {"hv1":
    "DIR/probe-kvm-host.sh"}
    python -m kvmqa evaluate DIR/hv1/probe.txt --host hv1 --groups kvm_hosts --out DIR  # -> DIR/results.json

The script Ansible runs is kvmqa's own probe (kvmqa/probe, the same text kvmqa's ssh transport sends) followed
by LIBVIRT_SH: what kvmqa's own run reads over its libvirt connection, read here with `virsh` on the host, so
one
`ansible.builtin.script` task is the host's only round trip. `evaluate` turns that raw output into facts with
the
same parsers (kvmqa.gather.facts.parse_probe with the stages' parsers, kvmqa.stages.libvirt.gather.parse_*)
and runs the same checks through a
HostSession, so a host gets the same verdicts either way. Stages that need a live connection from the
controller
(ovirt_engine, first_vm) are not evaluated here.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmqa.config.hosts import ROLES, roles_of_groups
from kvmqa.core.facts import HostFacts
from kvmqa.gather.facts import parse_probe, split_sections
from kvmqa.stages.libvirt.facts import defined_guest
from kvmqa.stages.libvirt.gather import parse_capabilities, parse_domcapabilities

if TYPE_CHECKING:
    from kvmqa.core.stage import ProbeParser, Registry, Stage

LIBVIRT_SH = r"""
# --- kvmqa over Ansible: libvirt facts with virsh (read-only),
# what kvmqa's own run reads over its libvirt connection
_kq_virsh() { LC_ALL=C timeout 60 virsh -c qemu:///system "$@"; }
if command -v virsh >/dev/null 2>&1; then
    _kq_sec libvirt_version _kq_virsh version --daemon
    if _kq_virsh uri >/dev/null 2>&1; then
        _kq_sec libvirt_uri _kq_virsh uri
        _kq_sec libvirt_hostname _kq_virsh hostname
        _kq_sec libvirt_capabilities _kq_virsh capabilities
        _kq_sec libvirt_domcaps_kvm _kq_virsh domcapabilities --virttype kvm --arch x86_64
        _kq_sec libvirt_domcaps_qemu _kq_virsh domcapabilities --virttype qemu --arch x86_64
        _kq_nets() {
            for n in $(_kq_virsh net-list --all --name); do
                echo "@@net $n"; _kq_virsh net-info "$n"; _kq_virsh net-dumpxml "$n"
            done
        }
        _kq_sec libvirt_networks _kq_nets
        _kq_pools() {
            for p in $(_kq_virsh pool-list --all --name); do
                echo "@@pool $p"; _kq_virsh pool-info --bytes "$p"; _kq_virsh pool-dumpxml "$p"
            done
        }
        _kq_sec libvirt_pools _kq_pools
        _kq_sec libvirt_domains _kq_virsh list --all --name
        # what each defined guest needs of a host it moves to (cluster checks): machine type, networks, pools
        _kq_doms() {
            for d in $(_kq_virsh list --all --name); do echo "@@dom $d"; _kq_virsh dumpxml "$d"; done
        }
        _kq_sec libvirt_guests _kq_doms
    fi
else
    _kq_sec libvirt_version sh -c \
        'echo "virsh is not installed on the host (kvmqa through Ansible reads libvirt with virsh)"; exit 127'
fi
"""


def evaluated_stages(registry: Registry | None = None) -> tuple[str, ...]:
    """What a probe output alone can decide: the stages declared `offline` (no live connection from the
    controller)."""
    if registry is None:
        from kvmqa.stages import builtin

        registry = builtin()
    return tuple(s.name for s in registry if s.offline)


def probe_script(roles: tuple[str, ...], site: Sequence[Stage] = ()) -> str:
    """kvmqa's probe for these roles (with the snippets of the stages, built-in and site, that apply to them),
    then virsh's facts."""
    from kvmqa.gather.probe import build_script
    from kvmqa.stages import builtin

    # how long the probe ran on the host (GNU date)
    started = "KVMQA_T0=$(date +%s%N 2>/dev/null); export KVMQA_T0\n"
    elapsed = "_kq_sec probe_elapsed_ns sh -c 'echo $(( $(date +%s%N) - KVMQA_T0 ))'\n"
    return started + build_script(builtin().with_stages(site).probe_snippets(roles)) + LIBVIRT_SH + elapsed


def write_probe_scripts(
    out_dir: Path, hosts_groups: dict[str, list[str]], site: Sequence[Stage] = ()
) -> dict[str, str]:
    """One script per role set (not per host), and which one each host runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[tuple[str, ...], str] = {}
    chosen = {}
    for host, groups in hosts_groups.items():
        roles = roles_of_groups(list(groups))
        if roles not in written:
            path = out_dir / f"probe-{'+'.join(roles)}.sh"
            path.write_text(probe_script(roles, site))
            written[roles] = str(path.resolve())
        chosen[host] = written[roles]
    return chosen


def all_role_sets() -> list[tuple[str, ...]]:
    return [c for n in range(1, len(ROLES) + 1) for c in combinations(ROLES, n)]


# --- libvirt sections -> the facts gather_libvirt returns
# --------------------------------------------------------
def _info(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z][\w ]*?):\s*(.*?)\s*$", line)
        if m and not line.startswith("<"):
            out[m.group(1).lower()] = m.group(2)
    return out


def _split_objects(body: str, marker: str) -> list[tuple[str, str, str]]:
    """(name, info text, XML text) for each `@@net NAME` / `@@pool NAME` block."""
    out = []
    for block in re.split(rf"^@@{marker} ", body, flags=re.M)[1:]:
        name, _, rest = block.partition("\n")
        xml_at = rest.find("<")
        out.append(
            (name.strip(), rest[:xml_at] if xml_at >= 0 else rest, rest[xml_at:] if xml_at >= 0 else "")
        )
    return out


def _virsh_error(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    errors = [
        x[len("error: ") :] if x.startswith("error: ") else x for x in lines if x.startswith("error:")
    ] or lines
    return errors[-1] if errors else "virsh failed without a message"


_VIRSH_NOISE = ("Authorization not available",)  # virsh on stderr when polkit is not running (no systemd)


def _libvirt_sections(text: str) -> dict[str, tuple[int, str]]:
    return {
        name: (rc, "\n".join(x for x in body.splitlines() if not x.startswith(_VIRSH_NOISE)))
        for name, (rc, body) in split_sections(text).items()
        if name.startswith("libvirt_")
    }


def parse_libvirt_sections(text: str, uri_note: str) -> dict[str, Any] | None:
    """The libvirt facts from the virsh sections, None when the output has none (kvmqa's own probe.txt)."""
    sec = _libvirt_sections(text)
    if "libvirt_version" not in sec:
        return None
    rc, version = sec["libvirt_version"]
    if rc != 0 or "libvirt_uri" not in sec:
        return {"connected": False, "uri": uri_note, "error": _virsh_error(version)}
    info = _info(version)
    facts: dict[str, Any] = {"connected": True, "uri": f"{sec['libvirt_uri'][1].strip()} {uri_note}"}
    facts["lib_version"] = info.get(
        "running against daemon",
        info.get("using library", "").split()[-1:][0] if info.get("using library") else "",
    )
    hyper = info.get("running hypervisor", "")
    if hyper:
        facts["hypervisor_version"] = hyper.split()[-1]
    else:
        facts["hypervisor_version_error"] = "virsh version names no running hypervisor"
    facts["hostname"] = sec.get("libvirt_hostname", (0, ""))[1].strip()
    facts["capabilities"] = parse_capabilities(sec["libvirt_capabilities"][1])
    domcaps: dict[str, Any] = {}
    for virttype in ("kvm", "qemu"):
        rc, body = sec.get(f"libvirt_domcaps_{virttype}", (1, "not gathered"))
        domcaps[virttype] = parse_domcapabilities(body) if rc == 0 else {"error": _virsh_error(body)}
    facts["domcapabilities"] = domcaps
    networks = []
    for name, info_text, xml_text in _split_objects(sec.get("libvirt_networks", (0, ""))[1], "net"):
        ni, xml = _info(info_text), ET.fromstring(xml_text)
        ip = xml.find("ip")
        networks.append(
            {
                "name": name,
                "active": ni.get("active") == "yes",
                "autostart": ni.get("autostart") == "yes",
                "persistent": ni.get("persistent") == "yes",
                "bridge": (bridge.get("name") if (bridge := xml.find("bridge")) is not None else ""),
                "forward": (
                    forward.get("mode", "") if (forward := xml.find("forward")) is not None else "isolated"
                ),
                "address": ip.get("address", "") if ip is not None else "",
            }
        )
    facts["networks"] = networks
    pools = []
    for name, info_text, xml_text in _split_objects(sec.get("libvirt_pools", (0, ""))[1], "pool"):
        pi, xml = _info(info_text), ET.fromstring(xml_text)
        pools.append(
            {
                "name": name,
                "active": pi.get("state") == "running",
                "autostart": pi.get("autostart") == "yes",
                "type": xml.get("type", ""),
                "path": xml.findtext("./target/path", ""),
                "capacity": int(pi.get("capacity", "0").split()[0] or 0),
                "available": int(pi.get("available", "0").split()[0] or 0),
            }
        )
    facts["pools"] = pools
    facts["domains"] = sorted(
        x.strip() for x in sec.get("libvirt_domains", (0, ""))[1].splitlines() if x.strip()
    )
    if "libvirt_guests" in sec:  # an older probe script has no guests' XML
        guests = [
            defined_guest(ET.fromstring(xml_text))
            for _, _, xml_text in _split_objects(sec["libvirt_guests"][1], "dom")
            if xml_text.strip()
        ]
        facts["guests"] = sorted(guests, key=lambda g: g["name"])
    return facts


# --- evaluate
# ---------------------------------------------------------------------------------------------------
def facts_from_probe_output(
    text: str,
    host: str,
    parsers: Sequence[ProbeParser],
    *,
    unreachable: str | None = None,
    error: str | None = None,
    rc: int | None = None,
    via: str = "ansible",
) -> HostFacts:
    """Facts as kvmqa's own run builds them (kvmqa.gather.probe.run_probe, HostSession.probe), from Ansible's
    output;
    `parsers`: the run's stages' (Registry.probe_parsers())."""
    text = text.replace("\r\n", "\n")  # Ansible runs a script under a pty when it becomes root
    if unreachable:
        return HostFacts(
            reach={"error": f"{host}: cannot reach {host} (Ansible: {unreachable.strip()})"},
            probe={"target": via},
        )
    if "@@kvmqa:probe_env" not in text:
        detail = text.strip()[-500:] or (f"Ansible: {error.strip()}" if error else "no output")
        return HostFacts(
            reach={"error": f"{host}: the probe did not run (rc={rc if rc is not None else '?'}): {detail}"},
            probe={"target": via},
        )
    facts = parse_probe(text, parsers)
    rc_elapsed, elapsed = split_sections(text).get("probe_elapsed_ns", (1, ""))
    facts["probe"]["duration_s"] = (
        round(int(elapsed.strip()) / 1e9, 3) if rc_elapsed == 0 and elapsed.strip().isdigit() else 0.0
    )
    facts["probe"]["target"] = via
    facts["probe"]["timed_out"] = rc in (124, 137)
    where = f"(on {host}, read with virsh through Ansible)"
    try:
        libvirt = parse_libvirt_sections(text, where)
    except (
        ET.ParseError,
        ValueError,
        KeyError,
        IndexError,
    ) as exc:  # a truncated or foreign output: a fact, not a crash
        libvirt = {"connected": False, "uri": where, "error": f"the virsh output could not be read: {exc}"}
    if libvirt is not None:
        facts["libvirt"] = libvirt
    return facts


def evaluate(
    text: str,
    host: str,
    out_dir: Path,
    *,
    groups: list[str] | None = None,
    roles: tuple[str, ...] | None = None,
    unreachable: str | None = None,
    error: str | None = None,
    rc: int | None = None,
    duration: float | None = None,
    profile_path: Path | None = None,
    waivers: Path | None = None,
    stages: tuple[str, ...] | None = None,
    site: Sequence[Stage] = (),
) -> Any:
    """One host's raw probe output -> out_dir/results.json (+ out_dir/HOST/facts.json and probe.txt), as a
    run writes them."""
    from kvmqa.config.options import RunOptions
    from kvmqa.config.profile import load_profile
    from kvmqa.policy.waivers import apply_waivers, load_waivers
    from kvmqa.report.results import RunResults
    from kvmqa.session.host import HostSession
    from kvmqa.stages import builtin
    from kvmqa.transport.target import Target

    started = time.time()
    registry = builtin().with_stages(site)
    stages = evaluated_stages(registry) if stages is None else stages
    # a run-scoped stage (cluster) is not one host's: `evaluate-cluster` decides it over every host's facts
    stages = tuple(s for s in stages if registry.get(s).scope != "run")
    roles = roles or roles_of_groups(groups or [])
    target = Target(name=host, backend="ssh", host=host, roles=roles)
    options = RunOptions(reports_dir=out_dir, profile_path=profile_path, waivers=waivers)
    profile = load_profile(profile_path, registry.columns())
    load_waivers(waivers)
    session = HostSession(target, profile, options, registry, all_targets=[target])
    if text.strip():
        (session.host_dir / "probe.txt").write_text(text)  # the raw output, as kvmqa's own run keeps it
    facts = facts_from_probe_output(
        text, host, registry.probe_parsers(), unreachable=unreachable, error=error, rc=rc
    )
    if duration is not None and "duration_s" in facts.get("probe", {}):
        facts["probe"]["duration_s"] = round(duration, 3)
    facts["target"] = {
        "name": host,
        "url": "ansible",
        "roles": list(roles),
        "sudo": bool(facts.get("probe", {}).get("euid") == "0"),
    }
    session.use_facts(facts)
    if "libvirt" not in facts and not facts.get("reach", {}).get(
        "error"
    ):  # kvmqa's own probe.txt: no virsh sections
        stages = tuple(s for s in stages if s != "libvirt")
    results = RunResults(columns=tuple(registry.columns()))
    for name in stages:
        stage = registry.get(name)
        for check_id in stage.checks.ids():
            finding = session.evaluate(stage, stage.checks.get(check_id))
            apply_waivers(session, finding)
            results.add(finding)
    summary = session.summary()
    summary["url"] = "ansible"
    summary["round_trips"] = {"ansible_scripts": 1}
    results.hosts[summary.pop("host")] = summary
    results.started = started
    results.write(out_dir / "results.json")
    return results


# --- the cluster, from the hosts' evaluated facts
# ------------------------------------------------------------------------
OFFLINE_SOURCE = (
    "the facts came from each host's probe output alone (through Ansible), not measured between hosts"
)


class ClusterInputError(ValueError):
    """A results.json given to evaluate-cluster that cannot be read; the message names the file."""


def _members(paths: Sequence[Path]) -> list[tuple[str, Path | None]]:
    """(host, its facts.json or None) for each host of each evaluated results.json, in the order given."""
    out: list[tuple[str, Path | None]] = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
            hosts = data["hosts"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClusterInputError(f"{path}: not a kvmqa results.json ({exc})") from None
        for name, summary in hosts.items():
            if "cluster" in summary.get("roles", []):
                continue  # an earlier cluster evaluation: not a host
            # where evaluate saved them (as it was called), else beside this results.json (moved reports)
            tried = [Path(summary["facts"])] if summary.get("facts") else []
            tried.append(path.parent / name / "facts.json")
            out.append((name, next((t for t in tried if t.is_file()), None)))
    return out


def evaluate_cluster(
    paths: Sequence[Path],
    out_dir: Path,
    *,
    profile_path: Path | None = None,
    waivers: Path | None = None,
    site: Sequence[Stage] = (),
) -> tuple[Any, str | None]:
    """The cluster checks over hosts `evaluate` judged one by one (their results.json): those the hosts'
    own facts decide are decided; those that need a measurement between the hosts say so (not applicable,
    naming what). Returns (results, None), written to out_dir/results.json, or (None, why the hosts are no
    cluster)."""
    from kvmqa.config.profile import load_profile
    from kvmqa.core.gate import evaluate_stage
    from kvmqa.policy.waivers import load_waivers, waive
    from kvmqa.report.results import RunResults
    from kvmqa.session.cluster import CLUSTER_HOST, not_a_cluster
    from kvmqa.stages import builtin
    from kvmqa.stages.cluster.facts import from_probe_outputs

    started = time.time()
    registry = builtin().with_stages(site)
    members = _members(paths)
    names = list(dict.fromkeys(name for name, _ in members))
    facts_of: dict[str, HostFacts | None] = {}
    for name, facts_path in members:
        try:
            facts_of[name] = HostFacts.load(facts_path) if facts_path else None
        except (OSError, ValueError) as exc:
            raise ClusterInputError(f"{facts_path}: the facts of {name} cannot be read ({exc})") from None
    boot_ids = {n: str(f.get("hostname", {}).get("boot_id", "")) if f else "" for n, f in facts_of.items()}
    why = not_a_cluster(names, boot_ids)
    if why is not None:
        for stale in (
            "results.json",
            "facts.json",
        ):  # an earlier run's cluster must not be merged as this one's
            (out_dir / stale).unlink(missing_ok=True)
        return None, why
    facts = HostFacts(cluster=from_probe_outputs(names, facts_of, OFFLINE_SOURCE))
    out_dir.mkdir(parents=True, exist_ok=True)
    facts.save(out_dir / "facts.json")
    profile = load_profile(profile_path, registry.columns())
    loaded = load_waivers(waivers)
    results = RunResults(columns=tuple(registry.columns()))
    stage = registry.get("cluster")
    for finding in evaluate_stage(stage.checks, CLUSTER_HOST, facts, profile):
        results.add(waive(finding, loaded))
    results.hosts[CLUSTER_HOST] = {
        "url": "ansible",
        "roles": ["cluster"],
        "members": names,
        "round_trips": {},
        "offline": OFFLINE_SOURCE,
        "facts": str(out_dir / "facts.json"),
    }
    results.started = started
    results.write(out_dir / "results.json")
    return results, None


def hosts_groups_arg(value: str) -> dict[str, list[str]]:
    data = json.loads(value if not value.startswith("@") else Path(value[1:]).read_text())
    if not isinstance(data, dict):
        raise ValueError("--hosts-groups: a JSON mapping host -> list of groups")
    return {str(h): [str(g) for g in (gs or [])] for h, gs in data.items()}
