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

Several hosts on a private segment, set up as a cluster (tests/lab/cluster.py):

    with boot_lab(plan_hosts(2, "bookworm,trixie", "max,Opteron_G5"), run_dir) as lab:
        setup_cluster(lab)                  # qemu+ssh trust, NFS pool kvmqa-shared, network kvmqa-lab
        lab["lab1"].sudo("virsh -c qemu+ssh://root@lab2/system version")

In pytest: the session fixtures `lab_bookworm` / `lab_trixie` and `lab_cluster`, the `lab_cluster_factory` for
mixed labs (tests/lab/fixtures.py, marker `lab`).

`python -m tests.lab up --suite trixie` (or `--hosts 2 ...`) does it for a person (README, "Development").
"""

from tests.lab.boot import LabBootError, LabHost, boot
from tests.lab.cluster import Lab, boot_lab, plan_hosts, setup_cluster, teardown_cluster
from tests.lab.image import LAB_IMAGES, BuiltImage, ImageSpec, LabBuildError, build_image

__all__ = [
    "LAB_IMAGES",
    "BuiltImage",
    "ImageSpec",
    "Lab",
    "LabBootError",
    "LabBuildError",
    "LabHost",
    "boot",
    "boot_lab",
    "build_image",
    "plan_hosts",
    "setup_cluster",
    "teardown_cluster",
]
