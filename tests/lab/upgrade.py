"""An in-place upgrade for a lab host: a local apt repository holding bookworm-backports' virtualization stack
(QEMU 10.0, libvirt 11.3) and whatever it needs that the lab image lacks, on a disk of its own that a lab host
mounts read-only, so it upgrades the way an admin does (`apt-get install -t bookworm-backports ...`) while
reaching no network.

    repo = backports_repo(build_image(LAB_IMAGES["bookworm"]))  # cached: ~/.cache/kvmqa/lab/...-repo-KEY/
    host = launch(image, run_dir, extra_args=repo_drive_args(repo))
    upgrade(host)                                                 # -> (seconds, apt's output)

The packages are resolved against the image's own dpkg status (read from its disk with debugfs, nothing is
mounted), so the repository holds exactly what apt on that host will ask for. The lab image itself (and its
cache key) is not changed: other tests keep their image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab.boot import LabHost
from tests.lab.image import CACHE_ROOT, BuiltImage, LabBuildError, _locked

SUITE = "bookworm-backports"
# What an admin names: the emulator, its tools, the daemon and its client.
UPGRADE = ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MOUNT = "/srv/kvmqa-backports"
# The expected versions (lab-hosts.md, measured 2026-12).
QEMU_VERSION = "1:10.0.2+ds-2+deb13u1~bpo12+1"
LIBVIRT_VERSION = "11.3.0-2~bpo12+1"


@dataclass(frozen=True)
class Repo:
    dir: Path

    disk = property(lambda self: self.dir / "repo.img")

    def debs(self) -> list[str]:
        return sorted(p.name for p in (self.dir / "debs").glob("*.deb"))


def _status_of(image: BuiltImage, out: Path) -> None:
    proc = subprocess.run(
        ["debugfs", "-R", f"dump /var/lib/dpkg/status {out}", str(image.disk)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise LabBuildError(f"cannot read the dpkg status of {image.disk}: {proc.stderr.strip()}")


def _apt(root: Path, log: Path, *args: str) -> None:
    opts = [
        f"-oDir={root}",
        f"-oDir::State::status={root / 'status'}",
        f"-oDir::State::Lists={root / 'lists'}",
        f"-oDir::Cache={root / 'cache'}",
        f"-oDir::Cache::Archives={root / 'cache' / 'archives'}",
        f"-oDir::Etc::SourceList={root / 'sources.list'}",
        f"-oDir::Etc::SourceParts={root / 'empty'}",
        f"-oDir::Etc::Preferences={root / 'empty' / 'none'}",
        f"-oDir::Etc::PreferencesParts={root / 'empty'}",
        f"-oDir::Etc::Parts={root / 'empty'}",
        "-oAPT::Architecture=amd64",
        "-oAPT::Sandbox::User=root",
        "-oAcquire::Retries=3",
        "-oDebug::NoLocking=1",
    ]
    with log.open("a") as out:
        out.write(f"$ apt-get {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(["apt-get", *opts, *args], stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LabBuildError(f"apt-get {args[0]} for the backports repository failed; log {log}:\n{tail}")


def backports_repo(image: BuiltImage, cache_root: Path = CACHE_ROOT, log=print) -> Repo:  # type: ignore[no-untyped-def]
    """The repository for upgrading `image` from bookworm-backports: from the cache, or fetched now."""
    h = hashlib.sha256(image.dir.name.encode() + " ".join(UPGRADE).encode() + Path(__file__).read_bytes())
    final = cache_root / f"{image.dir.name}-backports-repo-{h.hexdigest()[:12]}"
    if (final / "repo.img").exists():
        return Repo(final)
    with _locked(cache_root / f".{final.name}.lock"):
        if (final / "repo.img").exists():
            return Repo(final)
        tmp = cache_root / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        apt = tmp / "apt"
        debs = tmp / "debs"
        for d in (apt / "empty", apt / "lists/partial", apt / "cache/archives/partial", debs):
            d.mkdir(parents=True)
        _status_of(image, apt / "status")
        (apt / "sources.list").write_text(
            f"deb [signed-by={KEYRING}] {MIRROR} bookworm main\n"
            f"deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n"
        )
        t0 = time.monotonic()
        buildlog = tmp / "build.log"
        _apt(apt, buildlog, "update", "-q")
        _apt(
            apt,
            buildlog,
            "install",
            "-q",
            "-y",
            "--download-only",
            "--no-install-recommends",
            f"-oDir::Cache::Archives={debs}",
            "-t",
            SUITE,
            *UPGRADE,
        )
        shutil.rmtree(debs / "partial", ignore_errors=True)
        (debs / "lock").unlink(missing_ok=True)
        with (debs / "Packages").open("w") as packages:
            subprocess.run(
                ["dpkg-scanpackages", "-m", "."],
                cwd=debs,
                stdout=packages,
                check=True,
                stderr=subprocess.DEVNULL,
            )
        _release(debs)
        size_mib = sum(p.stat().st_size for p in debs.iterdir()) // 2**20 + 64
        subprocess.run(
            [
                "mke2fs",
                "-q",
                "-t",
                "ext4",
                "-L",
                "kvmqa-bpo",
                "-d",
                str(debs),
                "-F",
                str(tmp / "repo.img"),
                f"{size_mib}M",
            ],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(apt)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        repo = Repo(final)
        log(f"backports repository: {len(repo.debs())} packages in {time.monotonic() - t0:.0f} s -> {final}")
        return repo


def _release(debs: Path) -> None:
    """A Release file naming the suite as Debian's backports does (so `-t bookworm-backports` selects it, and
    NotAutomatic keeps it at priority 100 like the real one), with the Packages file's hash."""
    packages = (debs / "Packages").read_bytes()
    (debs / "Release").write_text(
        f"Origin: Debian Backports\nLabel: Debian Backports\nSuite: {SUITE}\nCodename: {SUITE}\n"
        "NotAutomatic: yes\nButAutomaticUpgrades: yes\nArchitectures: amd64 all\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )


def repo_drive_args(repo: Repo) -> list[str]:
    """QEMU options giving a lab host the repository as a read-only disk (/dev/vdb)."""
    return ["-drive", f"file={repo.disk},if=virtio,format=raw,readonly=on"]


def add_repo(host: LabHost) -> None:
    """Mount the repository disk and add it as the host's bookworm-backports source, as an admin adds one."""
    host.sudo(
        f"mkdir -p {MOUNT} && (mountpoint -q {MOUNT} || mount -o ro /dev/vdb {MOUNT}) && "
        f"echo 'deb [trusted=yes] file:{MOUNT} ./' > /etc/apt/sources.list.d/kvmqa-backports.list && "
        "apt-get update -q",
        check=True,
        timeout=300,
    )


def upgrade(host: LabHost, timeout: float = 1800) -> tuple[float, str]:
    """`apt-get install -t bookworm-backports` of the stack, non-interactively; (seconds, apt's output)."""
    t0 = time.monotonic()
    proc = host.sudo(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "-o Dpkg::Options::=--force-confold "
        f"-t {SUITE} {' '.join(UPGRADE)} 2>&1",
        timeout=timeout,
    )
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the upgrade failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds, proc.stdout


# Production-like guests, created years ago: one on a machine type QEMU 10.0 removed, one on a type it
# deprecates. No disk: SeaBIOS waits for a boot device, a real QEMU process that idles (nothing to install).
REMOVED_MACHINE = "pc-i440fx-2.3"
DEPRECATED_MACHINE = "pc-i440fx-5.2"
GUESTS = {"kvmqa-upgrade-old": REMOVED_MACHINE, "kvmqa-upgrade-depr": DEPRECATED_MACHINE}


def guest_xml(name: str, machine: str, cpu_model: str = "qemu64") -> str:
    return (
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='{machine}'>hvm</type><boot dev='hd'/></os>"
        f"<cpu mode='custom' match='exact'><model fallback='allow'>{cpu_model}</model></cpu>"
        "<on_crash>destroy</on_crash><devices><memballoon model='none'/></devices></domain>"
    )


def define_guests(host: LabHost) -> None:
    """Define and start the guests (persistent, as production guests are)."""
    for name, machine in GUESTS.items():
        host.sudo(
            f"cat > /tmp/{name}.xml <<'EOF'\n{guest_xml(name, machine)}\nEOF\n"
            f"virsh define /tmp/{name}.xml && virsh start {name}",
            check=True,
        )


def remove_guests(host: LabHost) -> None:
    for name in GUESTS:
        host.sudo(f"virsh destroy {name}; virsh undefine {name}; rm -f /tmp/{name}.xml")
