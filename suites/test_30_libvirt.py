"""Stage libvirt: daemon, connection, capabilities, default network, storage pool, virt-host-validate side by side."""

from kvmqa.checks.libvirt import CHECKS
from kvmqa.libvirt_facts import gather_libvirt_for
from kvmqa.plugin import stage_suite

test_libvirt = stage_suite(CHECKS, requires=("reach.probe", "packages.libvirt-daemon"), gatherers={"libvirt": gather_libvirt_for})
