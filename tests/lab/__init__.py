"""Lab hosts: real KVM hosts (systemd, sshd, libvirt, QEMU, kvm_amd, nested) built from Debian packages and
booted
under QEMU TCG with `-cpu max` (which emulates AMD-V), reached only through a hostfwd port on 127.0.0.1.

    from tests.lab import LAB_IMAGES, build_image, boot
    image = build_image(LAB_IMAGES["bookworm"])        # cached under ~/.cache/kvmqa/lab/bookworm-<key>/
    with boot(image, run_dir, smp=1) as host:           # a fresh qcow2 overlay in run_dir, removed on exit
        host.run("grep -c svm /proc/cpuinfo")           # plain OpenSSH as qa; host.sudo(...) as root
        host.suite_args()                               # --hosts ssh://qa@127.0.0.1:PORT --sudo
        --ssh-identity-file ...

    LAB_IMAGES["bookworm"].with_(local_repo=("virtinst", "ovmf"))   # another spec: another cache key

In pytest: the session fixtures `lab_bookworm` / `lab_trixie` (tests/lab/fixtures.py, marker `lab`).

`python -m tests.lab up --suite trixie` does the same for a person (see README, "Development").
"""

from tests.lab.boot import LabBootError, LabHost, boot
from tests.lab.image import LAB_IMAGES, BuiltImage, ImageSpec, LabBuildError, build_image

__all__ = [
    "LAB_IMAGES",
    "BuiltImage",
    "ImageSpec",
    "LabBootError",
    "LabBuildError",
    "LabHost",
    "boot",
    "build_image",
]
