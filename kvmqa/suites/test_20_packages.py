"""Stage packages: QEMU, libvirt, clients, virt-install and OVMF, distro-aware."""

from kvmqa.pytest_plugin.plugin import stage_test

test_packages = stage_test("packages")
