"""A STAND-IN cloud image for the `--guest-image` tests: no cloud image can be downloaded on this machine.

    image = build_standin_image(tmp_path / "cloud.qcow2", agent=True)

A qcow2 disk that boots the way a cloud image does, from the disk, with nothing passed on the kernel line by
kvmqa: SeaBIOS -> syslinux on a FAT volume -> the guest kit's Debian cloud kernel -> an init
(tests/standins/cloud_image/init.sh) that does the part of cloud-init's NoCloud datasource kvmqa's seed uses
(label cidata, meta-data instance-id, #cloud-config runcmd [sh, -c, |block], power_state poweroff), runs its
own
DHCP client and, with agent=True, Debian's qemu-ga (with the libraries it links) on the org.qemu.guest_agent.0
port, as an image's qemu-guest-agent service would. It proves kvmqa's side: upload, overlay, seed format and
label, disk and cdrom buses, the agent channel, the console markers and cleanup; not a real cloud-init.

Needs (test packages): syslinux, mtools, dosfstools, qemu-utils; qemu-guest-agent is fetched with
`apt-get download` and its libraries are taken from this machine (qemu-system-x86 pulls them in).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from kvmqa.stages.first_vm.cpio import CpioWriter
from kvmqa.stages.first_vm.kit import GUEST_MODULES, Source, _run, build_kit

INIT = Path(__file__).resolve().parents[1] / "standins" / "cloud_image" / "init.sh"
# What a cloud image's kernel needs for kvmqa's domain: the seed is an IDE cdrom (ata_piix, sr_mod, isofs),
# the guest agent a virtio-serial port.
IMAGE_MODULES = (*GUEST_MODULES, "ata_piix", "sr_mod", "isofs", "virtio_console")
TOOLS = ("mkfs.vfat", "mcopy", "syslinux", "qemu-img", "apt-get", "dpkg-deb", "ldd")
SYSLINUX_CFG = """SERIAL 0 115200
DEFAULT cloud
PROMPT 0
TIMEOUT 0
LABEL cloud
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0,115200 panic=-1
"""


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def agent_archive(work: Path) -> bytes:
    """A cpio archive with qemu-ga from Debian's package and every library it links, at their paths.
    The package is fetched the way the kit fetches its own (kept in ~/.cache/kvmqa/debs)."""
    source = Source("deb")
    root = work / "qga"
    source.fetch_and_unpack(source._deb_version("qemu-guest-agent"), work, root)
    binary = root / "usr" / "sbin" / "qemu-ga"
    cpio = CpioWriter()
    cpio.file("usr/sbin/qemu-ga", binary.read_bytes(), 0o755)
    for line in _run(["ldd", str(binary)]).splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m is None:
            if "not found" in line:
                raise RuntimeError(f"qemu-ga needs a library this machine lacks: {line.strip()}")
            continue
        path = m.group(1)
        cpio.file(path, Path(path).resolve().read_bytes(), 0o755)
    return cpio.archive()


def build_standin_image(dest: Path, *, agent: bool = True) -> Path:
    """Write the stand-in cloud image (qcow2) to `dest`."""
    if missing := missing_tools():
        raise RuntimeError(f"cannot build the stand-in cloud image: missing {', '.join(missing)}")
    kit = build_kit(init_script=INIT, modules=IMAGE_MODULES)
    with tempfile.TemporaryDirectory(prefix="kvmqa-standin-image-") as tmp:
        work = Path(tmp)
        initrd = work / "initrd.img"
        data = kit.initrd.read_bytes()
        if agent:
            import gzip

            data += gzip.compress(
                agent_archive(work), mtime=0
            )  # concatenated archives: the kernel unpacks both
        initrd.write_bytes(data)
        shutil.copyfile(kit.kernel, work / "vmlinuz")
        (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
        raw = work / "disk.raw"
        size_kib = 16 * 1024 + (initrd.stat().st_size + (work / "vmlinuz").stat().st_size) // 1024
        _run(["mkfs.vfat", "-C", "-n", "KVMQAIMG", str(raw), str(size_kib)])  # a whole-disk FAT volume
        _run(["mcopy", "-i", str(raw), str(work / "vmlinuz"), str(initrd), str(work / "syslinux.cfg"), "::/"])
        _run(["syslinux", "--install", str(raw)])  # boot sector + ldlinux.sys: BIOS boots the disk
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(dest)])
    return dest
