"""Libvirt facts: one libvirt connection per host (the second round trip), read-only, returned as data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from kvmqa.stages.libvirt.facts import defined_guest, machine_types

if TYPE_CHECKING:
    from kvmqa.gather.context import HostContext


def _version(n: int) -> str:
    return f"{n // 1000000}.{(n // 1000) % 1000}.{n % 1000}"


def parse_capabilities(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    guests = []
    for g in root.findall("guest"):
        arch = g.find("arch")
        if arch is None:
            continue
        guests.append(
            {
                "os_type": g.findtext("os_type", ""),
                "arch": arch.get("name", ""),
                "domain_types": sorted({d.get("type", "") for d in arch.findall("domain")}),
                "machines": sorted({m.text or "" for m in arch.findall("machine")}),
                "emulator": arch.findtext("emulator", ""),
            }
        )
    host = root.find("host")
    cpu = host.find("cpu") if host is not None else None
    return {
        "host_arch": cpu.findtext("arch", "") if cpu is not None else "",
        "host_cpu_model": cpu.findtext("model", "") if cpu is not None else "",
        "host_cpu_features": sorted(f.get("name", "") for f in cpu.findall("feature"))
        if cpu is not None
        else [],
        "guests": guests,
        "machine_types": machine_types(root),
    }


def parse_domcapabilities(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    loader = root.find("./os/loader")
    modes = {}
    for mode in root.findall("./cpu/mode"):
        modes[mode.get("name", "")] = mode.get("supported") == "yes"
    models = sorted(
        {m.text or "" for m in root.findall("./cpu/mode[@name='custom']/model") if m.get("usable") == "yes"}
    )
    sectypes = launch_security_types(root)
    return {
        "domain": root.findtext("domain", ""),
        "machine": root.findtext("machine", ""),
        "emulator": root.findtext("path", ""),
        "max_vcpus": int(vcpu.get("max", "0")) if (vcpu := root.find("vcpu")) is not None else 0,
        "loader_supported": loader is not None and loader.get("supported") == "yes",
        "loader_values": [v.text for v in root.findall("./os/loader/value")],
        "cpu_modes": modes,
        "usable_cpu_models": models,
        "devices": sorted(d.tag for d in root.findall("./devices/*") if d.get("supported") == "yes"),
        # launchSecurity.<sectype> entries make e.g. sev-snp visible to baselines, which compare this list
        "features": sorted(
            {f.tag for f in root.findall("./features/*") if f.get("supported") == "yes"}
            | {f"launchSecurity.{t}" for t in sectypes}
        ),
        "launch_security": sectypes,
        "cpu_models": cpu_models(root),
    }


def cpu_models(domcaps: ET.Element) -> list[dict[str, Any]]:
    """Every CPU model of the custom mode, usable here or not, and whether QEMU deprecates it (libvirt marks
    `deprecated='yes'` where QEMU says so)."""
    return [
        {
            "name": m.text or "",
            "usable": m.get("usable", "unknown"),
            "deprecated": m.get("deprecated") == "yes",
        }
        for m in domcaps.findall("./cpu/mode[@name='custom']/model")
        if m.text
    ]


def launch_security_types(root: ET.Element) -> list[str]:
    """Confidential-guest types libvirt offers: `<launchSecurity>`'s sectype enum (sev, sev-snp, tdx,
    s390-pv),
    and on older libvirt the `<sev supported='yes'>` / `<s390-pv supported='yes'>` features."""
    types = {
        v.text or ""
        for v in root.findall("./features/launchSecurity[@supported='yes']/enum[@name='sectype']/value")
    }
    for tag in ("sev", "s390-pv", "tdx"):
        feature = root.find(f"./features/{tag}")
        if feature is not None and feature.get("supported") == "yes":
            types.add(tag)
    return sorted(t for t in types if t)


# The machine KVM guests of an architecture get where libvirt's default is another one (None: the default).
ARCH_MACHINES = {"aarch64": "virt", "armv7l": "virt"}


def gather_libvirt(conn: Any) -> dict[str, Any]:
    """Everything the libvirt stage checks, from an open virConnect."""
    import libvirt

    facts: dict[str, Any] = {"connected": True, "uri": conn.getURI()}
    facts["lib_version"] = _version(conn.getLibVersion())
    try:
        facts["hypervisor_version"] = _version(conn.getVersion())
    except libvirt.libvirtError as exc:
        facts["hypervisor_version_error"] = str(exc)
    facts["hostname"] = conn.getHostname()
    facts["capabilities"] = parse_capabilities(conn.getCapabilities())
    domcaps: dict[str, Any] = {}
    # KVM guests are of the host's own architecture (aarch64, s390x, ...), and so is the emulated first VM
    own = facts["capabilities"].get("host_arch") or "x86_64"
    arches = {"kvm": own, "qemu": own}
    facts["domcapabilities_arch"] = arches
    # Arm's default machine is libvirt's first in the list (integratorcp, 1 vCPU): guests there use `virt`
    machine = ARCH_MACHINES.get(own)
    for virttype in ("kvm", "qemu"):
        try:
            domcaps[virttype] = parse_domcapabilities(
                conn.getDomainCapabilities(None, arches[virttype], machine, virttype, 0)
            )
        except libvirt.libvirtError as exc:
            domcaps[virttype] = {"error": exc.get_error_message()}
    facts["domcapabilities"] = domcaps
    networks = []
    for net in conn.listAllNetworks():
        xml = ET.fromstring(net.XMLDesc(0))
        ip = xml.find("ip")
        networks.append(
            {
                "name": net.name(),
                "active": bool(net.isActive()),
                "autostart": bool(net.autostart()),
                "persistent": bool(net.isPersistent()),
                "bridge": (bridge.get("name") if (bridge := xml.find("bridge")) is not None else ""),
                "forward": (
                    forward.get("mode", "") if (forward := xml.find("forward")) is not None else "isolated"
                ),
                "address": ip.get("address", "") if ip is not None else "",
            }
        )
    facts["networks"] = networks
    pools = []
    for pool in conn.listAllStoragePools():
        state, capacity, allocation, available = pool.info()
        xml = ET.fromstring(pool.XMLDesc(0))
        pools.append(
            {
                "name": pool.name(),
                "active": bool(pool.isActive()),
                "autostart": bool(pool.autostart()),
                "type": xml.get("type", ""),
                "path": xml.findtext("./target/path", ""),
                "capacity": capacity,
                "available": available,
            }
        )
    facts["pools"] = pools
    domains = conn.listAllDomains()
    facts["domains"] = sorted(d.name() for d in domains)
    # what a guest needs of any host it moves to (the cluster stage): its machine type, networks and pools
    facts["guests"] = sorted((guest_facts(d) for d in domains), key=lambda g: g["name"])
    return facts


def guest_facts(dom: Any) -> dict[str, Any]:
    """A defined guest: its definition (a persistent guest's inactive XML: what it starts from next time),
    whether it runs and whether it is persistent."""
    import libvirt

    persistent = bool(dom.isPersistent())
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
    return {**defined_guest(ET.fromstring(xml)), "active": bool(dom.isActive()), "persistent": persistent}


def gather_libvirt_for(session: HostContext) -> dict[str, Any]:
    """The libvirt stage's gatherer: a failed connection is a fact (checked by libvirt.connect), not a
    crash."""
    import time

    import libvirt

    from kvmqa.transport.target import first_meaningful_line

    started = time.perf_counter()
    try:
        conn = session.libvirt()
        facts = gather_libvirt(conn)
    except libvirt.libvirtError as exc:
        session.close_libvirt()
        target = session.target
        text = (exc.get_error_message() or str(exc)).strip()
        if target.is_local:
            error = text.splitlines()[0] if text else "no message"
        else:  # libvirt runs ssh itself: say so, and which host, in one line
            error = (
                f"{target.name}: libvirt connection over {target.backend} to {target.url} failed: "
                f"{first_meaningful_line(text) or 'no message'}"
            )
        return {
            "connected": False,
            "uri": target.libvirt_uri(session.host_dir / ".ssh"),
            "error": error,
            "stderr": text,
        }
    facts["connect_s"] = round(time.perf_counter() - started, 3)
    return facts
