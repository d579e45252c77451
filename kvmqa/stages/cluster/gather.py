"""The cluster stage's gatherer: the hosts' own facts (their probe and libvirt stage, gathered once each),
one sh
script per host about its peers (the only extra round trip), and libvirt API calls over the libvirt connection
each host already has: the migratable CPU baseline, each host's compare, each ordered pair's host-model
compare,
and a kvmqa- volume written into each shared pool on one host and read back on the others (always removed).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kvmqa.core.stage import GatherError
from kvmqa.stages.cluster.facts import (
    SSH_PORT,
    clock_offset,
    cpu_of,
    digest,
    host_model,
    host_model_cpu,
    host_model_cpu_xml,
    parse_peers,
    peer_script,
)
from kvmqa.transport.target import TargetError

if TYPE_CHECKING:
    from kvmqa.gather.context import ClusterContext

SHARED_POOL_TYPES = ("netfs", "gluster", "rbd")  # volumes one host writes that the others see (not 'dir')
VOLUME_PREFIX = "kvmqa-cluster-"
SCRIPT_TIMEOUT = 150


def gather_cluster(cluster: ClusterContext) -> dict[str, Any]:
    """The facts every cluster check reads: hosts (digests), missing (not judged: why) and cross
    (measured)."""
    names = list(cluster.member_names())
    if len(names) < 2:  # nothing to compare: no host is asked anything more
        return {"hosts": {}, "missing": {}, "members": names, "cross": {}}
    own, missing = cluster.member_facts()
    hosts = {name: digest(name, facts) for name, facts in own.items()}
    present = [n for n in names if n in hosts]
    cross: dict[str, Any] = {"peers": {}, "clock": {}, "script": {}}
    # the scripts first, all at once and alone: each host's clock is read while nothing else loads it
    threads = [
        threading.Thread(target=_run_script, args=(cluster, n, hosts, present, cross), daemon=True)
        for n in present
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conns = {n: cluster.member(n).libvirt() for n in present}
    cross["cpu"] = cpu_cross(conns, hosts, cluster.profile.stage("cluster").get("min_cpu_model"))
    cross["storage"] = shared_storage(conns, hosts)
    return {"hosts": hosts, "missing": missing, "members": names, "cross": cross}


def _run_script(
    cluster: ClusterContext, name: str, hosts: Mapping[str, Any], present: list[str], cross: dict[str, Any]
) -> None:
    others = [p for p in present if p != name]
    # in the script each peer is p0, p1, ... (inventory names such as 127.0.0.1:2222 are no shell words)
    peers = [
        (f"p{i}", hosts[p]["hostname"] or p, (SSH_PORT, hosts[p]["migration_port_min"]))
        for i, p in enumerate(others)
    ]
    target = cluster.member(name).target
    try:
        script = peer_script(peers)
        sent = time.time()
        result = target.run(script, timeout=SCRIPT_TIMEOUT, role="cluster peers script")
        received = time.time()
    except (TargetError, ValueError) as exc:
        cross["script"][name] = {"error": str(exc)}
        return
    parsed = parse_peers(result.stdout)
    cross["script"][name] = {
        "rc": result.rc,
        "user": parsed.get("user", ""),
        "ping": parsed.get("ping", ""),
        "tcp_tool": parsed.get("tcp_tool", ""),
        "stderr": result.stderr[-500:],
    }
    seen = parsed["peers"]
    cross["peers"][name] = {p: seen[f"p{i}"] for i, p in enumerate(others) if f"p{i}" in seen}
    cross["clock"][name] = clock_offset(parsed, sent, received)


def _libvirt_error(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    return str(get() if get else exc).strip()


def missing_features(message: str) -> list[str]:
    """The features libvirt names in an incompatible compare ("... required features: a, b")."""
    _, found, rest = message.partition("required features:")
    return sorted(f.strip() for f in rest.split(",") if f.strip()) if found else []


def compare(conn: Any, arch: str, cpu_xml: str) -> dict[str, Any]:
    """libvirt's compareHypervisorCPU of a CPU definition on a host: identical / superset / incompatible
    (with the
    features the host lacks) / error."""
    import libvirt

    try:
        code = conn.compareHypervisorCPU(
            None, arch, None, "kvm", cpu_xml, libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
        )
    except libvirt.libvirtError as exc:
        message = _libvirt_error(exc)
        if exc.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE or "incompatible" in message:
            return {"result": "incompatible", "missing": missing_features(message), "message": message}
        return {"result": "error", "message": message}
    words = {libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical", libvirt.VIR_CPU_COMPARE_SUPERSET: "superset"}
    return {"result": words.get(code, "incompatible"), "missing": [], "message": ""}


def cpu_cross(
    conns: Mapping[str, Any], hosts: Mapping[str, dict[str, Any]], min_model: str | None
) -> dict[str, Any]:
    """Each ordered pair's host-model compare (A's host-model CPU on B), the migratable baseline of every
    host's domcapabilities (computed by the first host whose libvirt can), each host's compare of it and
    each host's own migratable host-model (to name what the baseline drops)."""
    import libvirt

    flags = libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES | libvirt.VIR_CONNECT_BASELINE_CPU_MIGRATABLE
    out: dict[str, Any] = {"compare": {}, "own": {}, "pairs": {}, "min_model": {}}
    domcaps: dict[str, str] = {}
    for name, conn in conns.items():
        arch = hosts[name]["arch"] or "x86_64"
        try:
            xml = conn.getDomainCapabilities(None, arch, None, "kvm", 0)
            hosts[name]["host_model"] = host_model(xml)
            domcaps[name] = host_model_cpu(xml)
            if not domcaps[name]:
                raise GatherError(f"{name} offers no host-model CPU for KVM guests")
            out["own"][name] = cpu_of(
                conn.baselineHypervisorCPU(None, arch, None, "kvm", [domcaps[name]], flags)
            )
        except libvirt.libvirtError as exc:
            out["own"][name] = {"error": _libvirt_error(exc)}
            domcaps.pop(name, None)
        except GatherError as exc:
            out["own"][name] = {"error": str(exc)}
            domcaps.pop(name, None)
    if len(domcaps) != len(conns):
        out["error"] = "; ".join(f"{n}: {o['error']}" for n, o in out["own"].items() if "error" in o)
        return out
    arch = hosts[next(iter(conns))]["arch"] or "x86_64"
    for source in conns:
        model = hosts[source].get("host_model", {})
        for destination, conn in conns.items():
            if destination == source:
                continue
            if not model.get("supported"):
                result = {"result": "error", "message": f"{source} offers no host-model CPU"}
            else:
                result = compare(conn, arch, host_model_cpu_xml(model))
            out["pairs"].setdefault(source, {})[destination] = result
    # computed by the first host whose libvirt can (an older libvirt may not know a newer one's features)
    baseline_xml, computed_on, refused = "", "", {}
    for name, conn in conns.items():
        try:
            baseline_xml = conn.baselineHypervisorCPU(None, arch, None, "kvm", list(domcaps.values()), flags)
            computed_on = name
            break
        except libvirt.libvirtError as exc:
            refused[name] = _libvirt_error(exc)
    out["baseline_refused"] = refused
    if not computed_on:
        out["error"] = "baselineHypervisorCPU: " + "; ".join(f"on {n}: {e}" for n, e in refused.items())
        return out
    out["baseline"] = {**cpu_of(baseline_xml), "xml": baseline_xml, "computed_on": computed_on}
    for name, conn in conns.items():
        out["compare"][name] = compare(conn, arch, baseline_xml)
        if min_model:
            model_xml = f"<cpu mode='custom' match='exact'><model fallback='forbid'>{min_model}</model></cpu>"
            out["min_model"][name] = compare(conn, arch, model_xml)
    return out


def shared_storage(conns: Mapping[str, Any], hosts: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """For each pool of a shared type active on every host: a small kvmqa- volume written on the first host,
    read
    back on the others (after a pool refresh), then deleted, also when reading failed."""
    import libvirt

    names = list(conns)
    active = [{p["name"]: p for p in hosts[n]["pools"] if p.get("active")} for n in names]
    out: dict[str, Any] = {}
    for pool_name, pool in active[0].items():
        if pool.get("type") not in SHARED_POOL_TYPES or not all(pool_name in a for a in active):
            continue
        writer, readers = names[0], names[1:]
        volume = VOLUME_PREFIX + secrets.token_hex(4)
        token = secrets.token_hex(16).encode()
        record: dict[str, Any] = {"type": pool["type"], "writer": writer, "volume": volume, "read": {}}
        out[pool_name] = record
        vol = None
        try:
            src = conns[writer].storagePoolLookupByName(pool_name)
            vol = src.createXML(
                f"<volume><name>{volume}</name><capacity unit='bytes'>{len(token)}</capacity>"
                "<target><format type='raw'/></target></volume>",
                0,
            )
            stream = conns[writer].newStream(0)
            vol.upload(stream, 0, len(token), 0)
            stream.send(token)
            stream.finish()
            for reader in readers:
                record["read"][reader] = _read_back(conns[reader], pool_name, volume, token)
        except libvirt.libvirtError as exc:
            record["error"] = f"writing {volume} into {pool_name} on {writer}: {_libvirt_error(exc)}"
        finally:
            if vol is not None:
                try:
                    vol.delete(0)
                    record["removed"] = True
                except libvirt.libvirtError as exc:
                    record["removed"] = False
                    record["remove_error"] = _libvirt_error(exc)
    return out


def _read_back(conn: Any, pool_name: str, volume: str, token: bytes) -> str:
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(pool_name)
        pool.refresh(0)
        vol = pool.storageVolLookupByName(volume)
        stream = conn.newStream(0)
        vol.download(stream, 0, len(token), 0)
        data = b""
        while len(data) < len(token):
            chunk = stream.recv(len(token) - len(data))
            if not isinstance(chunk, bytes) or not chunk:
                break
            data += chunk
        stream.finish()
    except libvirt.libvirtError as exc:
        return f"not read: {_libvirt_error(exc)}"
    return "ok" if data == token else f"read {len(data)} bytes that differ from what was written"
