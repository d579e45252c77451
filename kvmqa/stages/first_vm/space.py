"""How much the first VM writes into a storage pool, and which pool: pure, so a check can gate the stage.

    need = space_need(profile)          # SpaceNeed(disk_mib=64, kit_mib=32, margin_mib=64)
    need.total_mib                      # 160
    reusable_pool("default", "dir")     # True: the Workspace puts its volumes there

What `observe` creates at once (kvmqa/stages/first_vm/boot.py): the kit's kernel and initramfs uploaded as
raw volumes (their file sizes), and one qcow2 data disk of `first_vm.disk_mib` per boot (64 MiB by default),
removed before the next boot starts. Measured in December 2026 on the real libvirtd here: the Debian 12 kit
(`linux-image-6.1.0-53-cloud-amd64`) is a 14,190,528-byte vmlinuz and a 1,173,610-byte initramfs (14.7 MiB),
the fresh 64 MiB data disk allocates 196 KiB; KIT_MIB leaves room for a larger distro kernel.
`--guest-image` uploads the user's image as well: that size is the user's, not counted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvmqa.stages.first_vm.domain import PREFIX

POOL_BASE = "/var/lib/libvirt/images"  # where the Workspace creates its own pool when it finds none to reuse
DEFAULT_DISK_MIB = 64  # the guest's qcow2 data disk (first_vm.disk_mib)
KIT_MIB = 32  # kernel + initramfs as pool volumes (measured 14.7 MiB, see above)
MARGIN_MIB = 64  # qcow2 metadata, the pool's own files, a kernel that grows


@dataclass(frozen=True)
class SpaceNeed:
    disk_mib: int
    kit_mib: int = KIT_MIB
    margin_mib: int = MARGIN_MIB

    @property
    def total_mib(self) -> int:
        return self.disk_mib + self.kit_mib + self.margin_mib

    def text(self) -> str:
        return (
            f"{self.total_mib} MiB ({self.disk_mib} MiB data disk + {self.kit_mib} MiB kernel and "
            f"initramfs + {self.margin_mib} MiB margin)"
        )


def space_need(profile: Any) -> SpaceNeed:
    """The first VM's own need under this profile (its `first_vm: {disk_mib: N}` or the default disk)."""
    stage = dict(profile.stage("first_vm")) if profile is not None else {}
    return SpaceNeed(int(stage.get("disk_mib") or DEFAULT_DISK_MIB))


def reusable_pool(name: str, pool_type: str) -> bool:
    """A pool the first VM's Workspace uses instead of creating its own: a dir pool kvmqa did not create."""
    return pool_type == "dir" and not name.startswith(PREFIX)
