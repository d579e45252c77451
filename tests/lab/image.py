"""Lab host images from Debian packages only: mmdebstrap -> customised rootfs -> raw ext4 disk + kernel +
initrd.

An image is described by an `ImageSpec` (data). `build_image(spec)` returns the cached image when one was
built
from the same spec by the same builder source, else builds it in a temporary directory and renames it into
place,
so an interrupted build never leaves a half image behind:

    ~/.cache/kvmqa/lab/<suite>-<key>/   disk.img  vmlinuz  initrd.img  client_ed25519{,.pub}  host_ed25519.pub
                                        spec.json  build.json  build.log

The image is a good KVM host as Debian ships it plus what a lab admin sets up: systemd, sshd, libvirtd (socket
activated), QEMU, the cloud kernel (kvm_amd as a module), the default network autostarted, a `default` dir
pool,
a user with passwordless sudo and the generated client key authorized for it and for root. Its package lists
are
empty and its only apt source is a local repository inside it (`/srv/kvmqa-repo`, `spec.local_repo`: those
packages and whatever they need that the image lacks, fetched here while building), since a lab host reaches
no
network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("KVMQA_LAB_CACHE", Path.home() / ".cache" / "kvmqa" / "lab"))
REPO_DIR = "/srv/kvmqa-repo"

# What every lab image holds: a systemd host with sshd, libvirt and QEMU, the cloud kernel with KVM modules.
BASE_PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "sudo",
    "python3",
    "kmod",
    "procps",
    "iproute2",
    "linux-image-cloud-amd64",
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "dnsmasq-base",
    "iptables",
    "nftables",
    "virtinst",
    "ovmf",
    # a multi-host lab's shared storage: lab1 exports over NFS, every host mounts it (nfs-common comes along)
    "nfs-kernel-server",
)
# Served from the image's local repository, so install mode can bring them back after a test removes them.
INSTALL_MODE_REPO = ("virtinst", "ovmf", "qemu-utils", "libvirt-daemon-system")


class LabBuildError(RuntimeError):
    """A lab image cannot be built here; the message says why (and where the build log is)."""


@dataclass(frozen=True)
class ImageSpec:
    """What goes into a lab image. Every field is part of the cache key."""

    name: str
    suite: str
    packages: tuple[str, ...] = BASE_PACKAGES
    local_repo: tuple[str, ...] = INSTALL_MODE_REPO
    hostname: str = "kvmqa-lab"
    user: str = "qa"
    disk_size: str = "6G"
    hosts_entry: bool = False  # the host's name in /etc/hosts (fresh hosts often lack it; kvmqa copes)
    default_network_autostart: bool = True
    default_pool: bool = True
    mirror: str = ""  # empty: mmdebstrap's default Debian mirror
    extra: dict[str, str] = field(default_factory=dict)  # free-form notes that should change the key

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        h.update(Path(__file__).read_bytes())
        return h.hexdigest()[:12]

    def with_(self, **changes: object) -> ImageSpec:
        return replace(self, **changes)  # type: ignore[arg-type]


LAB_IMAGES = {
    "bookworm": ImageSpec("bookworm", "bookworm", hostname="kvmqa-lab-bookworm"),
    "trixie": ImageSpec("trixie", "trixie", hostname="kvmqa-lab-trixie"),
}


@dataclass(frozen=True)
class BuiltImage:
    spec: ImageSpec
    dir: Path
    build_seconds: float | None  # None: came from the cache

    disk = property(lambda self: self.dir / "disk.img")
    kernel = property(lambda self: self.dir / "vmlinuz")
    initrd = property(lambda self: self.dir / "initrd.img")
    client_key = property(lambda self: self.dir / "client_ed25519")

    @property
    def host_key(self) -> str:
        """'ssh-ed25519 AAAA...' of the image's sshd."""
        return " ".join((self.dir / "host_ed25519.pub").read_text().split()[:2])


FILES = (
    "disk.img",
    "vmlinuz",
    "initrd.img",
    "client_ed25519",
    "client_ed25519.pub",
    "host_ed25519.pub",
    "spec.json",
)

# Runs as mmdebstrap's customize hook, outside the chroot, while the chroot's package lists still exist:
# fetch the named packages plus what they need that the image lacks, into the image's local repository.
REPO_HOOK = r"""set -eu
root=$1; shift
repo="$root/srv/kvmqa-repo"
mkdir -p "$repo/partial"
export APT_CONFIG="$MMDEBSTRAP_APT_CONFIG"
cd "$repo"
apt-get -q -o APT::Sandbox::User=root download "$@"
apt-get -q -y -o APT::Sandbox::User=root -o Dir::Cache::Archives="$repo/" install --download-only "$@"
rm -rf "$repo/partial" "$repo/lock"
"""


def cached_image(spec: ImageSpec, cache_root: Path = CACHE_ROOT) -> BuiltImage | None:
    d = cache_root / f"{spec.suite}-{spec.key()}"
    return BuiltImage(spec, d, None) if all((d / f).exists() for f in FILES) else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def missing_tools() -> list[str]:
    return [
        t
        for t in ("mmdebstrap", "mke2fs", "dpkg-scanpackages", "ssh-keygen", "qemu-img")
        if not shutil.which(t)
    ]


def build_image(
    spec: ImageSpec, cache_root: Path = CACHE_ROOT, log: Callable[[str], None] = print
) -> BuiltImage:
    """The image for `spec`: from the cache, or built now (one builder at a time per image, atomically)."""
    hit = cached_image(spec, cache_root)
    if hit:
        return hit
    if os.geteuid() != 0:
        raise LabBuildError(
            f"building the {spec.name} lab image needs root (mmdebstrap root mode, chroot); "
            f"run as root once, or copy a built image into {cache_root}"
        )
    if missing := missing_tools():
        raise LabBuildError(
            f"building the {spec.name} lab image needs {', '.join(missing)} "
            "(apt-get install mmdebstrap e2fsprogs dpkg-dev openssh-client qemu-utils)"
        )
    final = cache_root / f"{spec.suite}-{spec.key()}"
    with _locked(cache_root / f".{final.name}.lock"):
        hit = cached_image(spec, cache_root)
        if hit:
            return hit
        tmp = cache_root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        start = time.monotonic()
        try:
            _build_into(spec, tmp, log)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = time.monotonic() - start
        (tmp / "build.json").write_text(
            json.dumps({"seconds": round(seconds, 1), "built": time.time()}) + "\n"
        )
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        log(f"lab image {spec.name}: built in {seconds:.0f} s -> {final}")
        return BuiltImage(spec, final, seconds)


def _run(argv: list[str], logfile: Path, what: str) -> None:
    with logfile.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        raise LabBuildError(f"{what} failed (exit {proc.returncode}); log {logfile}:\n{tail}")


def _build_into(spec: ImageSpec, out: Path, log: Callable[[str], None]) -> None:
    rootfs = out / "rootfs"
    buildlog = out / "build.log"
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=1, sort_keys=True) + "\n")
    hook = out / "repo-hook.sh"
    hook.write_text(REPO_HOOK)
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        f"--include={','.join(spec.packages)}",
        "--aptopt=Acquire::Retries 3",
        "--dpkgopt=force-unsafe-io",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
    ]
    if spec.local_repo:
        argv.append(f'--customize-hook=sh {hook} "$1" {" ".join(spec.local_repo)}')
    argv += [spec.suite, str(rootfs)] + ([spec.mirror] if spec.mirror else [])
    log(f"lab image {spec.name}: mmdebstrap {spec.suite} ({len(spec.packages)} packages) ...")
    _run(argv, buildlog, "mmdebstrap")
    _customise(spec, rootfs, out, buildlog)
    boot = rootfs / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabBuildError(
            f"the {spec.name} rootfs has no kernel/initrd in /boot: {sorted(p.name for p in boot.iterdir())}"
        )
    shutil.copy(kernels[-1], out / "vmlinuz")
    shutil.copy(initrds[-1], out / "initrd.img")
    log(f"lab image {spec.name}: mke2fs {spec.disk_size} ...")
    _run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-L",
            "kvmqa-lab",
            "-d",
            str(rootfs),
            "-F",
            str(out / "disk.img"),
            spec.disk_size,
        ],
        buildlog,
        "mke2fs",
    )
    shutil.rmtree(rootfs)
    hook.unlink()


def _chroot(rootfs: Path, logfile: Path, *argv: str) -> None:
    _run(["chroot", str(rootfs), *argv], logfile, f"chroot {' '.join(argv)}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _customise(spec: ImageSpec, root: Path, out: Path, buildlog: Path) -> None:
    etc = root / "etc"
    _write(etc / "hostname", spec.hostname + "\n")
    own = f"127.0.1.1\t{spec.hostname}\n" if spec.hosts_entry else ""
    _write(etc / "hosts", f"127.0.0.1\tlocalhost\n{own}::1\tlocalhost ip6-localhost ip6-loopback\n")
    _write(etc / "fstab", "/dev/vda / ext4 defaults 0 0\n")
    _write(etc / "systemd/network/20-kvmqa-dhcp.network", "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n")
    _chroot(root, buildlog, "systemctl", "enable", "systemd-networkd.service")
    # A multi-host lab's second NIC gets its static address after boot: until then, the network is online
    # as soon as one link is (the DHCP one), not after wait-online's 2 minutes for a link without a server.
    _write(
        etc / "systemd/system/systemd-networkd-wait-online.service.d/kvmqa-any.conf",
        "[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-networkd-wait-online --any\n",
    )
    # Nothing reaches a mirror from here; timers that would try (and hold the dpkg lock) are masked.
    _chroot(
        root,
        buildlog,
        "systemctl",
        "mask",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "man-db.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
    )

    # The login user: passwordless sudo, no extra groups (a good host does not need them with --sudo).
    _chroot(root, buildlog, "useradd", "-m", "-s", "/bin/bash", spec.user)
    _chroot(root, buildlog, "usermod", "-p", "*", spec.user)
    _write(etc / f"sudoers.d/{spec.user}", f"{spec.user} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    key = out / "client_ed25519"
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kvmqa-lab-{spec.name}", "-f", str(key)],
        buildlog,
        "ssh-keygen",
    )
    pub = key.with_suffix(".pub").read_text()
    home = root / "home" / spec.user
    _write(home / ".ssh/authorized_keys", pub, 0o600)
    _chroot(root, buildlog, "chown", "-R", f"{spec.user}:{spec.user}", f"/home/{spec.user}/.ssh")
    (home / ".ssh").chmod(0o700)
    _write(root / "root/.ssh/authorized_keys", pub, 0o600)
    (root / "root/.ssh").chmod(0o700)
    host_pub = etc / "ssh/ssh_host_ed25519_key.pub"
    if not host_pub.exists():
        _chroot(root, buildlog, "ssh-keygen", "-A")
    shutil.copy(host_pub, out / "host_ed25519.pub")

    # libvirt as a lab admin leaves it: default network autostarted, a default dir pool.
    nets = etc / "libvirt/qemu/networks"
    if spec.default_network_autostart and (nets / "default.xml").exists():
        (nets / "autostart").mkdir(exist_ok=True)
        link = nets / "autostart/default.xml"
        if not link.is_symlink():
            link.symlink_to("/etc/libvirt/qemu/networks/default.xml")
    if spec.default_pool:
        pools = etc / "libvirt/storage"
        _write(
            pools / "default.xml",
            "<pool type='dir'>\n  <name>default</name>\n  <target>\n"
            "    <path>/var/lib/libvirt/images</path>\n  </target>\n</pool>\n",
            0o600,
        )
        (pools / "autostart").mkdir(exist_ok=True)
        (pools / "autostart/default.xml").symlink_to("/etc/libvirt/storage/default.xml")
        (root / "var/lib/libvirt/images").mkdir(parents=True, exist_ok=True)

    # apt: only the local repository (the lab reaches no mirror); its index is made here.
    for f in (etc / "apt/sources.list.d").glob("*"):
        f.unlink()
    if spec.local_repo:
        repo = root / REPO_DIR.lstrip("/")
        with (repo / "Packages").open("w") as packages:
            proc = subprocess.run(
                ["dpkg-scanpackages", "-m", "."], cwd=repo, stdout=packages, stderr=subprocess.PIPE, text=True
            )
        if proc.returncode != 0:
            raise LabBuildError(f"dpkg-scanpackages in {repo} failed: {proc.stderr.strip()}")
        _write(etc / "apt/sources.list", f"deb [trusted=yes] file:{REPO_DIR} ./\n")
    else:
        _write(etc / "apt/sources.list", "")
