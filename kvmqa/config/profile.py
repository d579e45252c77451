"""Profiles: what a lab requires of a host (thresholds, minimum versions, levels), from YAML.

Malformed profiles are clear errors naming the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kvmqa.config.yamlerrors import yaml_error_text
from kvmqa.core.model import Level

LEVELS = {"fail": Level.FAIL, "warn": Level.WARN, "info": Level.INFO}
# Version floors as OpenStack nova uses them (libvirt driver init_host): below MIN fails, below WARN warns.
DEFAULT_MIN_VERSIONS = {"libvirt": "8.0.0", "qemu": "6.2.0"}
DEFAULT_WARN_VERSIONS = {"libvirt": "10.0.0", "qemu": "8.2.2"}
SECURE_GUEST_TYPES = ("sev", "sev-es", "sev-snp", "tdx")
KSM_POLICIES = ("any", "on", "off")


class ProfileError(ValueError):
    pass


@dataclass
class Profile:
    name: str = "default"
    source: str = "built-in default"
    min_cpus: int = 2
    min_memory_gib: float = 2.0
    min_free_disk_gib: float = 5.0
    kvm: Level = Level.FAIL  # level when KVM is not usable (hw flag, /dev/kvm, KVM guest type)
    # level when the login user itself cannot open /dev/kvm: only qemu:///session (guests run as that user)
    # needs it;
    # libvirt's system guests run as the QEMU user, whose access stays at the `kvm` level
    session_kvm_access: Level = Level.WARN
    allow_emulation: bool = False  # boot the first VM under TCG when KVM is not usable
    nested: str = "optional"  # required | optional
    iommu: str = "optional"  # required | optional
    hugepages_min: int = 0  # required pre-allocated hugepages (0: not required)
    ovmf: Level = Level.WARN
    # qemu / libvirt / libvirt-clients / ...: a profile's entries replace these defaults one by one ("0" drops
    # one)
    min_versions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MIN_VERSIONS))
    warn_versions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_WARN_VERSIONS))
    ksm: str = "any"  # any | on | off: the lab's KSM policy (cpu.ksm)
    secure_guests: list[str] = field(default_factory=list)  # confidential-guest types a host must offer
    extra_packages: dict[str, list[str]] = field(default_factory=dict)  # family -> extra names (install mode)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stage(self, name: str) -> dict[str, Any]:
        """A stage's own settings (e.g. `first_vm: {boot_timeout: 60}`)."""
        return dict(self.stages.get(name, {}))


def _err(src: str, key: str, msg: str) -> ProfileError:
    return ProfileError(f"{src}: field {key!r}: {msg}")


def load_profile(path: Path | None, stages: Sequence[str]) -> Profile:
    """The profile at `path` (None: the defaults); `stages` are the run's stage names (Registry.columns())."""
    if path is None:
        return Profile()
    src = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ProfileError(f"{src}: profile file not found") from None
    except yaml.YAMLError as exc:
        raise ProfileError(yaml_error_text(exc, src)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{src}: a profile is a mapping of fields, got {type(data).__name__}")
    return profile_from_dict(data, src, stages)


def profile_from_dict(data: dict[str, Any], src: str, stages: Sequence[str]) -> Profile:
    known = {f.name for f in fields(Profile)} - {"source"}
    stage_keys = [s for s in stages if s != "reach"]  # reach has no settings of its own
    unknown = sorted(set(data) - known - set(stage_keys))
    if unknown:
        raise _err(src, unknown[0], f"unknown field (known: {', '.join(sorted(known | set(stage_keys)))})")
    p = Profile(source=src, name=str(data.get("name", Path(src).stem)))
    for key in ("min_cpus", "hugepages_min"):
        if key in data:
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
                raise _err(src, key, f"must be a non-negative integer, got {data[key]!r}")
            setattr(p, key, data[key])
    for key in ("min_memory_gib", "min_free_disk_gib"):
        if key in data:
            if not isinstance(data[key], (int, float)) or isinstance(data[key], bool) or data[key] < 0:
                raise _err(src, key, f"must be a non-negative number, got {data[key]!r}")
            setattr(p, key, float(data[key]))
    for key in ("kvm", "ovmf", "session_kvm_access"):
        if key in data:
            if data[key] not in LEVELS:
                raise _err(src, key, f"must be one of fail, warn, info, got {data[key]!r}")
            setattr(p, key, LEVELS[data[key]])
    if "allow_emulation" in data:
        if not isinstance(data["allow_emulation"], bool):
            raise _err(src, "allow_emulation", f"must be true or false, got {data['allow_emulation']!r}")
        p.allow_emulation = data["allow_emulation"]
    for key in ("nested", "iommu"):
        if key in data:
            if data[key] not in ("required", "optional"):
                raise _err(src, key, f"must be 'required' or 'optional', got {data[key]!r}")
            setattr(p, key, data[key])
    for key in ("min_versions", "warn_versions"):
        if key in data:
            mv = data[key]
            if not isinstance(mv, dict) or not all(isinstance(v, (str, int, float)) for v in mv.values()):
                raise _err(src, key, "must map component names to version strings")
            getattr(p, key).update({str(k): str(v) for k, v in mv.items()})
    if "ksm" in data:
        if data["ksm"] not in KSM_POLICIES:
            raise _err(src, "ksm", f"must be one of {', '.join(KSM_POLICIES)}, got {data['ksm']!r}")
        p.ksm = data["ksm"]
    if "secure_guests" in data:
        sg = data["secure_guests"]
        if not isinstance(sg, list) or any(t not in SECURE_GUEST_TYPES for t in sg):
            raise _err(src, "secure_guests", f"must be a list of {', '.join(SECURE_GUEST_TYPES)}, got {sg!r}")
        p.secure_guests = [str(t) for t in sg]
    if "extra_packages" in data:
        ep = data["extra_packages"]
        if not isinstance(ep, dict) or not all(isinstance(v, list) for v in ep.values()):
            raise _err(src, "extra_packages", "must map a family (debian, el) to a list of package names")
        p.extra_packages = {str(k): [str(x) for x in v] for k, v in ep.items()}
    for stage in stage_keys:
        if stage in data:
            if not isinstance(data[stage], dict):
                raise _err(src, stage, "stage settings must be a mapping")
            p.stages[stage] = data[stage]
    _check_patterns(src, "first_vm.dmesg_ignore", p.stage("first_vm").get("dmesg_ignore"))
    return p


def _check_patterns(src: str, key: str, value: Any) -> None:
    """A list of regular expressions (e.g. first_vm.dmesg_ignore), each one compiling."""
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(src, key, f"must be a list of regular expressions, got {value!r}")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _err(src, key, f"{pattern!r} is not a regular expression: {exc}") from None
