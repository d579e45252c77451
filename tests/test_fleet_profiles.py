"""Example profiles (fixtures/profiles/) and malformed ones: every error names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmqa.config.profile import ProfileError, load_profile
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Level, Verdict
from kvmqa.stages import builtin
from kvmqa.stages.cpu.checks import CHECKS as CPU
from tests.support.facts import facts

PROFILES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"


def test_acceptance_is_strict_and_emulation_lab_is_lenient() -> None:
    acceptance = load_profile(PROFILES / "acceptance.yaml", builtin().columns())
    lab = load_profile(PROFILES / "emulation-lab.yaml", builtin().columns())
    assert (acceptance.name, acceptance.kvm, acceptance.allow_emulation, acceptance.ovmf) == (
        "acceptance",
        Level.FAIL,
        False,
        Level.FAIL,
    )
    assert acceptance.min_versions == {"libvirt": "8.0.0", "qemu": "6.2.0"}
    assert (lab.name, lab.kvm, lab.allow_emulation) == ("emulation-lab", Level.WARN, True)
    # a VM without VT-x (recorded): KVM missing fails acceptance and only warns in the emulation lab
    host = facts("debian12-pvm")
    strict = {f.check_id: f.verdict for f in evaluate_stage(CPU, "vm", host, acceptance)}
    lenient = {f.check_id: f.verdict for f in evaluate_stage(CPU, "vm", host, lab)}
    assert strict["cpu.hw-virt"] == Verdict.FAIL and lenient["cpu.hw-virt"] == Verdict.WARN
    assert strict["cpu.host-cpus"] == Verdict.FAIL and lenient["cpu.host-cpus"] == Verdict.PASS  # 4 vs 1 CPUs


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kvm: maybe\n", "kvm"),
        ("allow_emulation: 'yes'\n", "allow_emulation"),
        ("min_memory_gib: -1\n", "min_memory_gib"),
        ("min_cpus: 2.5\n", "min_cpus"),
        ("nested: always\n", "nested"),
        ("min_versions: [qemu, libvirt]\n", "min_versions"),
        ("extra_packages: {debian: ovmf}\n", "extra_packages"),
        ("first_vm: 60\n", "first_vm"),
        ("name: x\nkvm_level: warn\n", "kvm_level"),
    ],
)
def test_malformed_profiles_name_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(path, builtin().columns())
    assert str(err.value).startswith(f"{path}: field {field!r}: ")


def test_broken_yaml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nkvm: [warn\n")
    with pytest.raises(ProfileError, match=rf"{path}:2: malformed YAML"):
        load_profile(path, builtin().columns())
    path.write_text("- kvm: warn\n")
    with pytest.raises(ProfileError, match=rf"{path}: a profile is a mapping"):
        load_profile(path, builtin().columns())
    with pytest.raises(ProfileError, match="profile file not found"):
        load_profile(tmp_path / "nope.yaml", builtin().columns())
