"""Domain and network XML built from data (ElementTree), never by pasting strings together.

A `DomainSpec` describes one throw-away guest: direct kernel boot from pool volumes, a qcow2 data disk,
virtio-net on a libvirt network, a pty serial console whose output libvirt also logs to a file, a pvpanic
device; a guest that powers off or panics is gone, one that resets boots again (the watcher sees the second
boot on the console and destroys it).
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

PREFIX = "kvmqa-"
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
ET.register_namespace("dnsmasq", DNSMASQ_NS)
CONSOLE_LOG_DIR = "/var/log/libvirt/qemu"


def object_name(purpose: str, host: str = "", token: str | None = None) -> str:
    """``kvmqa-<purpose>-<host-ish>-<random>``, safe for libvirt names and file paths."""

    def clean(text: str, width: int) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:width].strip("-")

    parts = [clean(purpose, 12), clean(host, 20), token or secrets.token_hex(3)]
    return PREFIX + "-".join(p for p in parts if p)


def random_mac() -> str:
    """A locally administered address in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@dataclass(frozen=True)
class DiskSpec:
    pool: str
    volume: str
    fmt: str = "qcow2"
    target: str = "vda"
    bus: str = "virtio"
    device: str = "disk"  # or cdrom
    readonly: bool = False
    cache: str = (
        ""  # '' (QEMU's default) or none, directsync, ...: libvirt migrates a shared disk only uncached
    )


@dataclass
class DomainSpec:
    name: str
    virt_type: str = "qemu"  # qemu (TCG) | kvm
    memory_mib: int = 256
    vcpus: int = 1
    kernel: str | None = None  # host path of the kernel (a pool volume's path)
    initrd: str | None = None
    cmdline: str = ""
    disks: list[DiskSpec] = field(default_factory=list)
    network: str | None = None
    mac: str = field(default_factory=random_mac)
    console_log: str | None = None  # host path; None: <CONSOLE_LOG_DIR>/<name>-console.log
    guest_agent: bool = False
    panic_device: bool = True
    machine: str = ""  # the machine type ('' : libvirt's default for the virt type; aarch64: virt)
    cpu: str = ""  # '' (libvirt's default), host-model, host-passthrough, or a named model (custom, exact)
    arch: str = "x86_64"  # the guest's (and, under KVM, the host's) architecture: x86_64 | aarch64

    @property
    def console_log_path(self) -> str:
        return self.console_log or f"{CONSOLE_LOG_DIR}/{self.name}-console.log"

    def to_xml(self) -> str:
        dom = ET.Element("domain", type=self.virt_type)
        _text(dom, "name", self.name)
        _text(dom, "memory", str(self.memory_mib), unit="MiB")
        _text(dom, "vcpu", str(self.vcpus))
        os_el = ET.SubElement(dom, "os")
        x86 = self.arch == "x86_64"
        # aarch64: the `virt` machine; device tree, as ACPI there needs UEFI and direct kernel boot has none
        machine = self.machine or ("" if x86 else "virt")
        _text(os_el, "type", "hvm", arch=self.arch, **({"machine": machine} if machine else {}))
        if self.kernel:
            _text(os_el, "kernel", self.kernel)
            if self.initrd:
                _text(os_el, "initrd", self.initrd)
            if self.cmdline:
                _text(os_el, "cmdline", self.cmdline)
        else:
            ET.SubElement(os_el, "boot", dev="hd")
        features = ET.SubElement(dom, "features")
        if x86:
            ET.SubElement(features, "acpi")
        if self.cpu in ("host-model", "host-passthrough"):
            ET.SubElement(dom, "cpu", mode=self.cpu)
        elif self.cpu:
            cpu = ET.SubElement(dom, "cpu", mode="custom", match="exact")
            _text(cpu, "model", self.cpu, fallback="forbid")
        elif not x86:
            # QEMU's default `virt` CPU is a 32-bit cortex-a15: KVM runs the host's CPU, TCG a 64-bit model
            cpu = ET.SubElement(dom, "cpu", mode="host-passthrough" if self.virt_type == "kvm" else "custom")
            if self.virt_type != "kvm":
                _text(cpu, "model", "cortex-a57", fallback="forbid")
        ET.SubElement(dom, "clock", offset="utc")
        # on_reboot restart, not destroy: with destroy libvirt ends a resetting guest as shutoff/destroyed,
        # the
        # same state `virsh destroy` leaves, so a reset could not be told from a kill; restarted, the guest's
        # second boot shows on the console and the watcher destroys it at once, naming the reset
        for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
            _text(dom, event, action)
        devices = ET.SubElement(dom, "devices")
        # libvirt adds a USB controller by default; an emulated UHCI costs CPU all through a TCG boot, and the
        # guest uses none (the console is serial)
        ET.SubElement(devices, "controller", type="usb", model="none")
        for disk in self.disks:
            _disk(devices, disk)
        if self.network:
            iface = ET.SubElement(devices, "interface", type="network")
            ET.SubElement(iface, "source", network=self.network)
            ET.SubElement(iface, "mac", address=self.mac)
            ET.SubElement(iface, "model", type="virtio")
            if not x86:  # Debian's arm64 QEMU has no iPXE ROM for virtio-net (efi-virtio.rom); none is needed
                ET.SubElement(iface, "rom", enabled="no")
        serial = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(serial, "log", file=self.console_log_path, append="off")
        ET.SubElement(serial, "target", port="0")
        console = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(console, "target", type="serial", port="0")
        if self.guest_agent:
            channel = ET.SubElement(devices, "channel", type="unix")
            ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
        if self.panic_device and x86:  # the ISA pvpanic device exists on x86 machines only
            ET.SubElement(devices, "panic", model="isa")
        ET.SubElement(devices, "memballoon", model="none")
        ET.indent(dom)
        return ET.tostring(dom, encoding="unicode")


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    el.text = text
    return el


def _disk(devices: ET.Element, disk: DiskSpec) -> None:
    el = ET.SubElement(devices, "disk", type="volume", device=disk.device)
    driver = ET.SubElement(el, "driver", name="qemu", type=disk.fmt)
    if disk.cache:
        driver.set("cache", disk.cache)
    ET.SubElement(el, "source", pool=disk.pool, volume=disk.volume)
    ET.SubElement(el, "target", dev=disk.target, bus=disk.bus)
    if disk.readonly:
        ET.SubElement(el, "readonly")


@dataclass(frozen=True)
class NetworkSpec:
    """A libvirt network with DHCP on a /24. `forward=None` is isolated: nothing is routed off the host."""

    name: str
    bridge: str
    subnet: int  # the x in 192.168.x.0/24
    forward: str | None = None  # None (isolated) | "nat"

    @property
    def gateway(self) -> str:
        return f"192.168.{self.subnet}.1"

    def to_xml(self) -> str:
        net = ET.Element("network")
        _text(net, "name", self.name)
        # dnsmasq pings an address for ~3 s before offering it; on a private throw-away /24 that is waste.
        options = ET.SubElement(net, f"{{{DNSMASQ_NS}}}options")
        ET.SubElement(options, f"{{{DNSMASQ_NS}}}option", value="no-ping")
        if self.forward:
            ET.SubElement(net, "forward", mode=self.forward)
        ET.SubElement(net, "bridge", name=self.bridge, stp="off", delay="0")
        ET.SubElement(net, "dns", enable="no")
        ip = ET.SubElement(net, "ip", address=self.gateway, netmask="255.255.255.0")
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", start=f"192.168.{self.subnet}.10", end=f"192.168.{self.subnet}.200")
        ET.indent(net)
        return ET.tostring(net, encoding="unicode")


@dataclass(frozen=True)
class PoolSpec:
    name: str
    path: str

    def to_xml(self) -> str:
        pool = ET.Element("pool", type="dir")
        _text(pool, "name", self.name)
        target = ET.SubElement(pool, "target")
        _text(target, "path", self.path)
        ET.indent(pool)
        return ET.tostring(pool, encoding="unicode")


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    capacity: int  # bytes
    fmt: str = "qcow2"
    backing_path: str | None = None
    backing_fmt: str = "qcow2"

    def to_xml(self) -> str:
        vol = ET.Element("volume")
        _text(vol, "name", self.name)
        _text(vol, "capacity", str(self.capacity), unit="bytes")
        target = ET.SubElement(vol, "target")
        ET.SubElement(target, "format", type=self.fmt)
        if self.backing_path:
            backing = ET.SubElement(vol, "backingStore")
            _text(backing, "path", self.backing_path)
            ET.SubElement(backing, "format", type=self.backing_fmt)
        ET.indent(vol)
        return ET.tostring(vol, encoding="unicode")
