"""cloud-init NoCloud seed: a volume labelled ``cidata`` holding /user-data and /meta-data.

Built with genisoimage, xorriso or mkisofs (ISO9660 + Joliet + Rock Ridge, so the names stay
``user-data``), else a vfat image with mkfs.vfat + mcopy. The user-data contains no password and no key:
it only prints KVMQA-* markers on the serial console, proves a data disk, reports the guest agent
and powers the guest off.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LABEL = "cidata"
AGENT_DONE_FILE = "/run/kvmqa-agent-pinged"  # the host creates it through the agent after guest-ping

GUEST_SCRIPT = r"""
say() { echo "$* up=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0; }
mem_kb=$(awk '/^MemTotal/{print $2}' /proc/meminfo)
say "KVMQA-BOOT kernel=$(uname -r) cpus=$(nproc) mem_kb=$mem_kb source=cloud-init"
say "KVMQA-CLOUDINIT ok instance={instance}"
if [ -b /dev/vdb ]; then
  token=$(tr -d '-' < /proc/sys/kernel/random/uuid | head -c 16)
  printf 'KVMQA:%s\n' "$token" | dd of=/dev/vdb bs=512 count=1 conv=sync,fsync 2>/dev/null
  echo 3 > /proc/sys/vm/drop_caches
  back=$(dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -n 1)
  if [ "$back" = "KVMQA:$token" ]; then say "KVMQA-DISK ok token=$token dev=vdb"
  else say "KVMQA-DISK fail token=$token dev=vdb"; fi
else
  say "KVMQA-DISK fail reason=no-/dev/vdb"
fi
ip4=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)
nic=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $2}' | head -n 1)
if [ -n "$ip4" ]; then say "KVMQA-NET ok ip=$ip4 mac=$(cat /sys/class/net/$nic/address) dev=$nic"
else say "KVMQA-NET fail reason=no-address"; fi
if command -v qemu-ga >/dev/null 2>&1; then
  systemctl start qemu-guest-agent 2>/dev/null
  say "KVMQA-AGENT present=yes"
  i=0
  while [ $i -lt {agent_window} ] && [ ! -e {agent_done} ]; do sleep 1; i=$((i + 1)); done
else
  say "KVMQA-AGENT present=no"
fi
say "KVMQA-DONE"
"""


class SeedError(RuntimeError):
    """No tool to build the seed volume."""


@dataclass(frozen=True)
class Seed:
    path: Path
    tool: str
    fmt: str  # iso | vfat


def user_data(instance: str, agent_window: int = 15) -> str:
    script = (
        GUEST_SCRIPT.replace("{instance}", instance)
        .replace("{agent_window}", str(agent_window))
        .replace("{agent_done}", AGENT_DONE_FILE)
    )
    lines = ["#cloud-config", "runcmd:", "  - - sh", "    - -c", "    - |"]
    lines += ["      " + line for line in script.strip().splitlines()]
    lines += ["power_state:", "  mode: poweroff", "  delay: now", "  condition: true", ""]
    return "\n".join(lines)


def meta_data(instance: str) -> str:
    return f"instance-id: {instance}\nlocal-hostname: kvmqa-guest\n"


def build_seed(dest: Path, instance: str, agent_window: int = 15) -> Seed:
    """Write the seed volume to `dest` with the first tool found."""
    work = dest.parent / (dest.name + ".d")
    work.mkdir(parents=True, exist_ok=True)
    (work / "user-data").write_text(user_data(instance, agent_window))
    (work / "meta-data").write_text(meta_data(instance))
    files = [str(work / "user-data"), str(work / "meta-data")]
    try:
        for tool in ("genisoimage", "mkisofs"):
            if shutil.which(tool):
                _run([tool, "-quiet", "-output", str(dest), "-volid", LABEL, "-joliet", "-rock", *files])
                return Seed(dest, tool, "iso")
        if shutil.which("xorriso"):
            _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(dest), "-V", LABEL, "-J", "-R", *files])
            return Seed(dest, "xorriso", "iso")
        if shutil.which("mkfs.vfat") and shutil.which("mcopy"):
            with dest.open("wb") as fh:
                fh.truncate(2 * 1024 * 1024)
            _run(["mkfs.vfat", "-n", LABEL.upper(), str(dest)])
            _run(["mcopy", "-i", str(dest), *files, "::/"])
            return Seed(dest, "mkfs.vfat+mcopy", "vfat")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raise SeedError("no tool to build a cloud-init seed: install genisoimage, xorriso or dosfstools+mtools")


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SeedError(f"{argv[0]} failed (rc={proc.returncode}): {proc.stderr.strip()[-300:]}")
