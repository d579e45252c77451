"""The arm64 lab image (`bookworm-arm64`): the same host as tests/lab/image.py builds, from Debian's arm64
packages (mmdebstrap --arch=arm64, the arm64 binaries run through qemu-user-static and binfmt_misc).

It lives beside image.py rather than inside it: an x86 image's cache key hashes image.py's source, so the
x86 images stay where they are. The arm64 key hashes image.py and the arm64 recipe (`_build_into`). Booted
by tests/lab/boot.py on QEMU's `virt` machine at EL2 (`virtualization=on`, GICv3, `-cpu max` under TCG),
where bookworm's cloud kernel brings KVM up in VHE mode and `/dev/kvm` exists.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.lab import image as x86
from tests.lab.image import CACHE_ROOT, BuiltImage, ImageSpec, LabBuildError

ARCH_PACKAGE_SWAP = {
    "linux-image-cloud-amd64": "linux-image-cloud-arm64",
    "qemu-system-x86": "qemu-system-arm",
    "ovmf": "qemu-efi-aarch64",
}
ARM64_PACKAGES = tuple(ARCH_PACKAGE_SWAP.get(p, p) for p in x86.BASE_PACKAGES)
ARM64_LOCAL_REPO = tuple(ARCH_PACKAGE_SWAP.get(p, p) for p in x86.INSTALL_MODE_REPO)
BINFMT = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Arm64ImageSpec(ImageSpec):
    """An ImageSpec for a foreign architecture (Debian's name: arm64)."""

    arch: str = "arm64"

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        h.update(Path(x86.__file__).read_bytes())
        h.update(inspect.getsource(_build_into).encode())  # the arm64 recipe, not this whole module
        return h.hexdigest()[:12]


ARM64_IMAGES = {
    "bookworm-arm64": Arm64ImageSpec(
        "bookworm-arm64",
        "bookworm",
        packages=ARM64_PACKAGES,
        local_repo=ARM64_LOCAL_REPO,
        hostname="kvmqa-lab-arm64",
    ),
}


def _cache_dir(spec: ImageSpec, cache_root: Path) -> Path:
    return cache_root / f"{spec.suite}-{getattr(spec, 'arch', 'amd64')}-{spec.key()}"


def cached_image(spec: Arm64ImageSpec, cache_root: Path = CACHE_ROOT) -> BuiltImage | None:
    d = _cache_dir(spec, cache_root)
    return BuiltImage(spec, d, None) if all((d / f).exists() for f in x86.FILES) else None


def foreign_arch_missing(arch: str) -> str:
    """Why this machine cannot run `arch` binaries for mmdebstrap ('' when it can)."""
    qemu = {"arm64": "aarch64"}.get(arch, arch)
    if not (BINFMT / "status").exists():
        return (
            "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc) "
            f"and {arch} binaries cannot run for mmdebstrap"
        )
    if not (BINFMT / f"qemu-{qemu}").exists():
        return (
            f"no binfmt_misc handler for {arch} (apt-get install qemu-user-static binfmt-support; "
            f"update-binfmts --enable qemu-{qemu})"
        )
    return ""


def build_image(
    spec: Arm64ImageSpec, cache_root: Path = CACHE_ROOT, log: Callable[[str], None] = print
) -> BuiltImage:
    """The arm64 image for `spec`: from the cache, or built now (atomically, one builder at a time)."""
    hit = cached_image(spec, cache_root)
    if hit:
        return hit
    if os.geteuid() != 0:
        raise LabBuildError(f"building the {spec.name} lab image needs root (mmdebstrap root mode, chroot)")
    if missing := x86.missing_tools():
        raise LabBuildError(f"building the {spec.name} lab image needs {', '.join(missing)}")
    if why := foreign_arch_missing(spec.arch):
        raise LabBuildError(f"building the {spec.name} lab image: {why}")
    final = _cache_dir(spec, cache_root)
    with x86._locked(cache_root / f".{final.name}.lock"):
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


def _build_into(spec: Arm64ImageSpec, out: Path, log: Callable[[str], None]) -> None:
    rootfs = out / "rootfs"
    buildlog = out / "build.log"
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=1, sort_keys=True) + "\n")
    hook = out / "repo-hook.sh"
    hook.write_text(x86.REPO_HOOK)
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        f"--architectures={spec.arch}",
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
    log(f"lab image {spec.name}: mmdebstrap {spec.suite} {spec.arch} ({len(spec.packages)} packages) ...")
    x86._run(argv, buildlog, "mmdebstrap")
    t0 = time.monotonic()
    x86._customise(spec, rootfs, out, buildlog)
    log(f"lab image {spec.name}: customised in {time.monotonic() - t0:.0f} s")
    boot = rootfs / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabBuildError(
            f"the {spec.name} rootfs has no kernel/initrd in /boot: {sorted(p.name for p in boot.iterdir())}"
        )
    # Debian's arm64 vmlinuz is a gzip'd Image; QEMU's -kernel takes it as it is.
    shutil.copy(kernels[-1], out / "vmlinuz")
    shutil.copy(initrds[-1], out / "initrd.img")
    log(f"lab image {spec.name}: mke2fs {spec.disk_size} ...")
    x86._run(
        ["mke2fs", "-q", "-t", "ext4", "-L", "kvmqa-lab", "-d", str(rootfs), "-F", str(out / "disk.img")]
        + [spec.disk_size],
        buildlog,
        "mke2fs",
    )
    shutil.rmtree(rootfs)
    hook.unlink()


# Every lab image by name, whatever its architecture: what `./run lab --suite NAME` and the fixtures take.
ALL_IMAGES: dict[str, ImageSpec] = {**x86.LAB_IMAGES, **ARM64_IMAGES}


def build_lab_image(spec: ImageSpec, log: Callable[[str], None] = print) -> BuiltImage:
    """Build (or find) any lab image: the x86 builder for x86 specs, this one for arm64."""
    if isinstance(spec, Arm64ImageSpec):
        if not shutil.which("qemu-system-aarch64"):
            raise LabBuildError(
                f"the {spec.name} lab host needs qemu-system-aarch64 here (apt-get install qemu-system-arm)"
            )
        return build_image(spec, log=log)
    return x86.build_image(spec, log=log)


if __name__ == "__main__":  # python -m tests.lab.image_arm64: build (or find) the image, print where
    img = build_image(ARM64_IMAGES["bookworm-arm64"])
    print(img.dir, img.build_seconds)
    subprocess.run(["ls", "-la", str(img.dir)], check=False)
