"""Stage cluster: CPU baseline and pairs, machine types, versions, clocks, names, ports, MTU, pools, networks,
trust."""

from kvmqa.pytest_plugin.plugin import stage_test

test_cluster = stage_test("cluster")
