"""EL hosts as real ones report themselves (tests/recorded/el/): the distro and its package manager read from
os-release, every kernel flavour asked and matched to `uname -r`, kernels ordered rpm's way."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kvmqa.gather.distro import package_manager_of
from kvmqa.gather.facts import HostFacts, split_sections
from kvmqa.gather.probe import preamble, snippet
from kvmqa.stages import builtin
from tests.support.el import EL_DIR, os_release, recorded_lines, rpm_qf_lines
from tests.support.facts import facts, parse
from tests.test_checks_host import EL9, verdicts

EL_RELEASES = {
    "almalinux-8.10": "AlmaLinux 8.10 (Cerulean Leopard)",
    "rhel-8.5": "Red Hat Enterprise Linux 8.5 (Ootpa)",
    "rhel-9.4": "Red Hat Enterprise Linux 9.4 (Plow)",
    "rocky-9.4": "Rocky Linux 9.4 (Blue Onyx)",
    "centos-9": "CentOS Stream 9",
    "ol-server-8.9": "Oracle Linux Server 8.9",
    "ol-9.1": "Oracle Linux Server 9.1",
    "fedora-server-40": "Fedora Linux 40 (Server Edition)",
}
LEAPP = "ol8-uek-leapp-pr1593.txt"


def el_host(release: str, kernels: str, running: str) -> HostFacts:
    """The constructed EL9 host with a recorded os-release, kernel packages and booted kernel."""
    f = facts(EL9, os_release=os_release(release), host_packages=f"manager=rpm\n{kernels}")
    f["kernel"]["release"] = running
    return f


# --- the distro and its package manager ---
@pytest.mark.parametrize("release", sorted(EL_RELEASES))
def test_recorded_el_os_release_is_an_rpm_host(release: str) -> None:
    f = facts(EL9, os_release=os_release(release))
    seen = (f["os"]["family"], package_manager_of(f), f["os"]["pretty_name"])
    assert seen == ("el", "rpm", EL_RELEASES[release])


def run_snippets(tmp_path: Path, osr: str, *names: str) -> str:
    """The probe's library and these stages' snippets under dash, with os-release and the package tools stood
    in for."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool, answer in (
        ("rpm", "kernel-uek-core|(none):5.15.0-323.211.3.5.el8uek|ii |x86_64"),
        ("dpkg-query", "linux-image-6.1.0-28-amd64|6.1.119-1|ii "),
    ):
        (stubs / tool).write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/{tool}.args\necho '{answer}'\n")
        (stubs / tool).chmod(0o755)
    (tmp_path / "os-release").write_text(osr)
    script = "\n".join(
        [
            *preamble(),
            snippet("00-lib.sh"),
            f"_kq_osr={tmp_path}/os-release",
            *(builtin().get(n).probe for n in names),
        ]
    )
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}
    return subprocess.run(["dash", "-c", script], capture_output=True, text=True, env=env, timeout=60).stdout


def test_el_host_with_dpkg_installed_is_asked_with_rpm_for_every_kernel_flavour(tmp_path: Path) -> None:
    out = run_snippets(tmp_path, os_release("ol-server-8.9"), "packages", "host")
    assert not (tmp_path / "dpkg-query.args").exists()
    asked = (tmp_path / "rpm.args").read_text()
    for flavour in (
        "kernel-core",
        "kernel-uek-core",
        "kernel-uek",
        "kernel-rt-core",
        "kernel-debug-core",
        "kernel-64k-core",
        "kernel-lt-core",
        "kernel-ml-core",
        "libvirt-daemon-kvm",
    ):
        assert f" {flavour} " in f" {asked} ".replace("\n", " "), flavour
    sections = split_sections(out)
    assert sections["packages"][1].startswith("manager=rpm")
    f = parse(out)
    assert f["host_packages"]["manager"] == "rpm"
    assert f["host_packages"]["kernels"][0]["unames"] == ["5.15.0-323.211.3.5.el8uek.x86_64"]


def test_debian_stays_dpkg_and_an_unknown_distro_asks_no_manager(tmp_path: Path) -> None:
    debian = run_snippets(tmp_path, 'ID=debian\nVERSION_ID="12"\n', "packages")
    assert split_sections(debian)["packages"][1].startswith("manager=dpkg")
    (tmp_path / "plan9").mkdir()
    plan9 = run_snippets(tmp_path / "plan9", "ID=plan9\n", "packages")
    assert split_sections(plan9)["packages"] == (3, "manager=none")
    v = verdicts(facts(EL9, os_release="ID=plan9\nID_LIKE=bell-labs"))
    assert v["host.reboot-pending"][0] == "skip" and "packages.manager" in v["host.reboot-pending"][1]


# --- host.reboot-pending on EL kernels ---
def test_ol8_booted_into_the_newest_uek_needs_no_reboot() -> None:
    packages = rpm_qf_lines(recorded_lines(LEAPP, "rpm -qa kernel*"))  # tools, headers, modules too
    running = recorded_lines(LEAPP, "uname -r")[0]
    v = verdicts(el_host("ol-server-8.9", packages, running))["host.reboot-pending"]
    assert v == (
        "pass",
        "booted kernel 5.15.0-323.211.3.5.el8uek.x86_64 (5.15.0-323.211.3.5.el8uek) is the "
        "newest of 1 installed; other kernels not compared: 4.18.0-553.158.1.el8_10.x86_64",
    )


def test_ol8_booted_into_an_older_uek_must_reboot_into_the_newest() -> None:
    older = recorded_lines("ol8-uname-falco-pr138.txt", "uname -a")[0].split()[2]
    assert older == "5.15.0-100.96.32.el8uek.x86_64"
    nevras = recorded_lines(LEAPP, "rpm -qa kernel*") + [f"kernel-uek-{older}", f"kernel-uek-core-{older}"]
    packages = rpm_qf_lines(nevras)
    v = verdicts(el_host("ol-server-8.9", packages, older))["host.reboot-pending"]
    assert v == (
        "fail",
        "booted kernel 5.15.0-100.96.32.el8uek.x86_64 (5.15.0-100.96.32.el8uek) is older "
        "than the newest installed 5.15.0-323.211.3.5.el8uek.x86_64 "
        "(5.15.0-323.211.3.5.el8uek): reboot",
    )


ALMA85 = rpm_qf_lines(
    [
        f"{name}-4.18.0-{release}.x86_64"
        for release in ("348.el8", "348.7.1.el8_5")
        for name in ("kernel", "kernel-core")
    ]
)


def test_almalinux_85_booted_into_its_kernel_update_is_not_told_to_go_back_to_ga() -> None:
    v = verdicts(el_host("almalinux-8.10", ALMA85, "4.18.0-348.7.1.el8_5.x86_64"))["host.reboot-pending"]
    assert v == (
        "pass",
        "booted kernel 4.18.0-348.7.1.el8_5.x86_64 (4.18.0-348.7.1.el8_5) is the newest of 2 installed",
    )
    ga = verdicts(el_host("almalinux-8.10", ALMA85, "4.18.0-348.el8.x86_64"))["host.reboot-pending"]
    assert ga[0] == "fail" and "newest installed 4.18.0-348.7.1.el8_5.x86_64" in ga[1]


def test_a_respin_after_the_arch_suffix_is_newer() -> None:
    kernels = rpm_qf_lines(
        ["kernel-core-4.18.0-372.9.1.el8_6.x86_64", "kernel-core-4.18.0-372.9.1.el8_6.0.1.x86_64"]
    )
    v = verdicts(el_host("rhel-8.5", kernels, "4.18.0-372.9.1.el8_6.x86_64"))["host.reboot-pending"]
    assert v[0] == "fail" and "newest installed 4.18.0-372.9.1.el8_6.0.1.x86_64" in v[1]


def test_debug_and_64k_builds_are_matched_by_their_uname_variant() -> None:
    kernels = "\n".join(
        [
            "kernel-64k-core|(none):5.14.0-284.11.1.el9_2|ii |aarch64",
            "kernel-64k-core|(none):5.14.0-284.30.1.el9_2|ii |aarch64",
            "kernel-core|(none):5.14.0-362.8.1.el9_3|ii |aarch64",
            "kernel-debug-core|(none):5.14.0-284.11.1.el9_2|ii |aarch64",
        ]
    )

    def verdict(running: str) -> tuple[str, str]:
        return verdicts(el_host("rhel-9.4", kernels, running))["host.reboot-pending"]

    newest64k = verdict("5.14.0-284.30.1.el9_2.aarch64+64k")
    assert newest64k[0] == "pass" and "is the newest of 2 installed" in newest64k[1]
    older64k = verdict("5.14.0-284.11.1.el9_2.aarch64+64k")
    assert older64k[0] == "fail" and "newest installed 5.14.0-284.30.1.el9_2.aarch64+64k" in older64k[1]
    debug = verdict("5.14.0-284.11.1.el9_2.aarch64+debug")
    assert debug[0] == "pass" and "is the newest of 1 installed" in debug[1]


def test_recorded_files_are_named_in_the_readme() -> None:
    readme = (EL_DIR / "README.md").read_text()
    for path in [*(EL_DIR / "os-release").iterdir(), *(EL_DIR / "kernels").iterdir()]:
        assert path.name in readme, path.name
