"""Build the guest kit (kernel + initramfs) on the controller from distro packages; no internet images.

The kit is of the host's architecture (`ARCH_KITS`: x86_64, aarch64); a host of another architecture gets
one KitError line, never a kit it cannot run under KVM.

Debian/Ubuntu: the versioned package behind ``linux-image-cloud-<arch>`` and ``busybox-static`` are fetched
with ``apt-get download`` (or taken from /var/cache/apt/archives) and unpacked with ``dpkg-deb -x``. A kit of
another architecture than the controller's (an arm64 kit from an amd64 controller) is resolved and fetched
through a private apt state under ``~/.cache/kvmqa/apt-<arch>/`` (the controller's sources, that
architecture's indexes): the controller's dpkg and apt configuration are not touched.
EL/Fedora: ``kernel-core`` and ``busybox`` with ``dnf download``, unpacked with ``rpm2cpio | cpio`` (the
controller's own architecture only).

The initramfs (cpio newc, gzip, written in Python) holds busybox, ``kvmqa/data/guest-init.sh`` as /init and
the virtio/pvpanic modules the kernel does not build in, in dependency order (/etc/kvmqa/modules).
Kits are cached under ``~/.cache/kvmqa/kit/<hash>/``; the hash covers the package versions, the init
script, the module list and BUILDER_VERSION, so a kit is rebuilt only when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kvmqa.core.paths import data_file
from kvmqa.stages.first_vm.cpio import CpioWriter
from kvmqa.stages.first_vm.kmods import ModuleTree, read_ko

BUILDER_VERSION = "1"
INIT_SCRIPT = data_file("guest-init.sh")
GUEST_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "pvpanic_mmio")
BASE_CMDLINE = "console=ttyS0,115200 panic=-1"


@dataclass(frozen=True)
class ArchKit:
    """What a guest kit is made of for one architecture (libvirt's and uname's name: x86_64, aarch64)."""

    arch: str
    deb_arch: str  # Debian's name: amd64, arm64
    kernel_package: str  # the Debian metapackage whose linux-image-* dependency is the kernel
    cmdline: str  # console and panic behaviour
    modules: tuple[str, ...]  # guest modules the kernel may not build in


ARCH_KITS = {
    "x86_64": ArchKit("x86_64", "amd64", "linux-image-cloud-amd64", BASE_CMDLINE, GUEST_MODULES),
    # the `virt` machine: PL011 console (ttyAMA0), virtio on PCIe; no ISA pvpanic device to drive
    "aarch64": ArchKit(
        "aarch64", "arm64", "linux-image-cloud-arm64", "console=ttyAMA0 panic=-1", GUEST_MODULES[:3]
    ),
}


def arch_kit(arch: str) -> ArchKit:
    """The kit recipe for a host architecture; KitError (one line) for one kvmqa has no kit for."""
    found = ARCH_KITS.get(arch or "x86_64")
    if found is None:
        raise KitError(
            f"no guest kit for host architecture {arch}: kvmqa builds first-VM kits for "
            f"{', '.join(ARCH_KITS)} (a kit of another architecture would not run under KVM there)"
        )
    return found


class KitError(RuntimeError):
    """The kit cannot be built on this controller (missing tool, package or module)."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str


@dataclass(frozen=True)
class Kit:
    """A bootable guest: kernel, initramfs and what went into them."""

    kernel: Path
    initrd: Path
    kernel_release: str
    key: str
    packages: tuple[Package, ...]
    modules: tuple[str, ...]
    arch: str = "x86_64"

    def cmdline(self, *extra: str) -> str:
        return " ".join((arch_kit(self.arch).cmdline, *[e for e in extra if e]))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["kernel"], data["initrd"] = str(self.kernel), str(self.initrd)
        return data


def cache_root() -> Path:
    base = os.environ.get("KVMQA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kvmqa")
    return Path(base) / "kit"


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    """stdout of argv; KitError (one line) when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        raise KitError(f"{argv[0]} not found on the controller: it is needed to build the guest kit")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise KitError(f"{' '.join(argv)} failed (rc={proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc.stdout


@dataclass(frozen=True)
class Source:
    """How one package family is resolved, fetched and unpacked."""

    family: str
    arch: ArchKit = ARCH_KITS["x86_64"]

    def apt_options(self) -> list[str]:
        """apt options for the kit's architecture: none for the controller's own, else a private state."""
        if self.family != "deb" or self.arch.deb_arch == _dpkg_arch():
            return []
        return foreign_apt_state(self.arch.deb_arch)

    def resolve(self) -> tuple[Package, Package]:
        """(kernel package, busybox package) with the versions that would be fetched."""
        if self.family == "deb":
            meta = self.arch.kernel_package
            deps = _run(["apt-cache", *self.apt_options(), "depends", meta])
            names = [
                line.split(":", 1)[1].strip()
                for line in deps.splitlines()
                if line.strip().startswith("Depends:") and "linux-image-" in line
            ]
            if not names:
                raise KitError(f"apt-cache: {meta} has no linux-image-* dependency (run apt-get update?)")
            return self._deb_version(names[0]), self._deb_version("busybox-static")
        if self.arch.arch != os.uname().machine:
            raise KitError(
                f"an {self.arch.arch} guest kit is built from rpms on an {self.arch.arch} controller only "
                f"(this one is {os.uname().machine})"
            )
        return self._rpm_version("kernel-core"), self._rpm_version("busybox")

    def _deb_version(self, name: str) -> Package:
        for line in _run(["apt-cache", *self.apt_options(), "show", "--no-all-versions", name]).splitlines():
            if line.startswith("Version:"):
                return Package(name, line.split(":", 1)[1].strip())
        raise KitError(f"apt-cache knows no version of {name} ({self.arch.deb_arch})")

    @staticmethod
    def _rpm_version(name: str) -> Package:
        out = _run(["dnf", "-q", "repoquery", "--latest-limit=1", "--qf", "%{version}-%{release}", name])
        version = out.strip().splitlines()[-1] if out.strip() else ""
        if not version:
            raise KitError(f"dnf repoquery found no {name}")
        return Package(name, version)

    def fetch_and_unpack(self, pkg: Package, workdir: Path, root: Path) -> None:
        if self.family == "deb":
            deb = _cached_deb(pkg, self.arch.deb_arch) or self._apt_download(pkg, workdir)
            _run(["dpkg-deb", "-x", str(deb), str(root)])
            return
        _run(["dnf", "-q", "download", "--destdir", str(workdir), f"{pkg.name}-{pkg.version}"])
        rpm = next(workdir.glob(f"{pkg.name}-*.rpm"), None)
        if rpm is None:
            raise KitError(f"dnf download produced no {pkg.name} rpm")
        for tool in ("rpm2cpio", "cpio"):
            if shutil.which(tool) is None:
                raise KitError(f"{tool} not found: needed to unpack {rpm.name}")
        with subprocess.Popen(["rpm2cpio", str(rpm)], stdout=subprocess.PIPE) as p2c:
            subprocess.run(["cpio", "-idm", "--quiet"], stdin=p2c.stdout, cwd=root, check=True, timeout=300)

    def _apt_download(self, pkg: Package, workdir: Path) -> Path:
        """Download once into ~/.cache/kvmqa/debs (a changed init script must not re-download)."""
        store = cache_root().parent / "debs"
        store.mkdir(parents=True, exist_ok=True)
        quoted = pkg.version.replace(":", "%3a")
        arch = self.arch.deb_arch
        kept = next(store.glob(f"{pkg.name}_{quoted}_{arch}.deb"), None)
        if kept is not None:
            return kept
        _run(
            ["apt-get", "-q", "-o", "APT::Sandbox::User=root", *self.apt_options()]
            + ["download", f"{pkg.name}:{arch}={pkg.version}"],
            cwd=workdir,
        )
        deb = next(workdir.glob(f"{pkg.name}_*_{arch}.deb"), None)
        if deb is None:
            raise KitError(f"apt-get download produced no {pkg.name} .deb for {arch}")
        for old in store.glob(f"{pkg.name}_*_{arch}.deb"):  # keep one version per package and architecture
            old.unlink()
        return Path(shutil.move(str(deb), store / deb.name))


def _cached_deb(pkg: Package, arch: str) -> Path | None:
    quoted = pkg.version.replace(":", "%3a")
    found = sorted(Path("/var/cache/apt/archives").glob(f"{pkg.name}_{quoted}_{arch}.deb"))
    return found[0] if found else None


def _dpkg_arch() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


FOREIGN_LISTS_MAX_AGE = 24 * 3600.0


def foreign_apt_state(deb_arch: str) -> list[str]:
    """apt options that read and fetch `deb_arch` packages from the controller's sources through a state of
    their own under ~/.cache/kvmqa/apt-<arch> (updated when older than a day); dpkg is not told about it."""
    state = cache_root().parent / f"apt-{deb_arch}"
    lists, cache = state / "lists", state / "cache"
    for d in (lists / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    status = state / "status"
    status.touch()
    opts = [
        *("-o", f"APT::Architecture={deb_arch}", "-o", f"APT::Architectures={deb_arch}"),
        *("-o", f"Dir::State::Lists={lists}", "-o", f"Dir::State::status={status}"),
        *("-o", f"Dir::Cache={cache}"),
    ]
    indexes = list(lists.glob("*_Packages*"))
    stamp = state / "updated"
    fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < FOREIGN_LISTS_MAX_AGE
    if not indexes or not fresh:
        _run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", *opts, "update"], timeout=600)
        if not list(lists.glob("*_Packages*")):
            raise KitError(f"apt-get update for {deb_arch} fetched no package index (are deb sources set?)")
        stamp.touch()
    return opts


def detect_source(arch: str = "x86_64") -> Source:
    recipe = arch_kit(arch)
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        return Source("deb", recipe)
    if shutil.which("dnf"):
        return Source("rpm", recipe)
    raise KitError("neither apt-get+dpkg-deb nor dnf found on the controller: cannot build the guest kit")


def kit_key(
    packages: tuple[Package, ...], init_script: bytes, modules: tuple[str, ...], arch: str = "x86_64"
) -> str:
    data: dict[str, object] = {
        "packages": [asdict(p) for p in packages],
        "modules": list(modules),
        "init": hashlib.sha256(init_script).hexdigest(),
        "builder": BUILDER_VERSION,
    }
    if arch != "x86_64":  # x86_64 kits keep the keys they had before kits had an architecture
        data["arch"] = arch
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def build_kit(
    cache: Path | None = None,
    source: Source | None = None,
    init_script: Path = INIT_SCRIPT,
    modules: tuple[str, ...] | None = None,
    arch: str = "x86_64",
) -> Kit:
    """Return the cached kit of `arch` (the host's) for the current package versions, building it first if
    needed. KitError for an architecture kvmqa has no kit for."""
    recipe = arch_kit(arch)
    source = source or detect_source(arch)
    modules = recipe.modules if modules is None else modules
    packages = source.resolve()
    script = init_script.read_bytes()
    key = kit_key(packages, script, modules, recipe.arch)
    dest = (cache or cache_root()) / key
    manifest = dest / "kit.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return Kit(
            dest / "vmlinuz",
            dest / "initrd.img",
            data["kernel_release"],
            key,
            packages,
            tuple(data["modules"]),
            recipe.arch,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kvmqa-kit-", dir=dest.parent) as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        for pkg in packages:
            source.fetch_and_unpack(pkg, work, root)
        staged = work / "out"
        staged.mkdir()
        kit = _assemble(root, staged, script, modules, key, packages, recipe.arch)
        (staged / "kit.json").write_text(json.dumps(kit.to_json(), indent=2))
        try:
            staged.rename(dest)
        except OSError:  # a concurrent builder won the race: its kit is identical
            if not manifest.exists():
                raise
    return Kit(
        dest / "vmlinuz", dest / "initrd.img", kit.kernel_release, key, packages, kit.modules, recipe.arch
    )


def _assemble(
    root: Path,
    out: Path,
    script: bytes,
    wanted: tuple[str, ...],
    key: str,
    packages: tuple[Package, ...],
    arch: str = "x86_64",
) -> Kit:
    kernels = sorted((root / "boot").glob("vmlinuz-*")) or sorted(
        (root / "lib" / "modules").glob("*/vmlinuz")
    )
    if not kernels:
        raise KitError("the kernel package contains no vmlinuz")
    kernel = kernels[-1]
    release = kernel.name.removeprefix("vmlinuz-") if kernel.name != "vmlinuz" else kernel.parent.name
    tree = ModuleTree(root / "lib" / "modules" / release)
    order = tree.load_order(list(wanted))
    busybox = next(
        (
            p
            for p in (
                root / "bin" / "busybox",
                root / "usr" / "bin" / "busybox",
                root / "usr" / "sbin" / "busybox",
            )
            if p.exists()
        ),
        None,
    )
    if busybox is None:
        raise KitError("the busybox package contains no busybox binary")

    cpio = CpioWriter()
    for d in ("dev", "proc", "sys", "tmp", "etc/kvmqa", "lib/kvmqa", "sbin", "usr/bin", "usr/sbin", "mnt"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", script, 0o755)
    for mod in order:
        cpio.file(f"lib/kvmqa/{mod.name}.ko", read_ko(mod.path))
    cpio.file("etc/kvmqa/modules", "".join(m.name + "\n" for m in order).encode())
    cpio.file("etc/kvmqa/kit", f"key={key} kernel={release}\n".encode())
    shutil.copyfile(kernel, out / "vmlinuz")
    cpio.write_gzip(out / "initrd.img")
    return Kit(
        out / "vmlinuz", out / "initrd.img", release, key, packages, tuple(m.name for m in order), arch
    )
