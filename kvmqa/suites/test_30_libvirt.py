"""Stage libvirt: daemon, connection, capabilities, default network, storage pool, virt-host-validate side by
side."""

from kvmqa.pytest_plugin.plugin import stage_test

test_libvirt = stage_test("libvirt")
