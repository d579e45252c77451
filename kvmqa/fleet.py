"""Fleet runs under pytest-xdist: every test of one host goes to one worker, in the suite's order.

    pytest suites --inventory fleet.yaml -n 8 --dist loadgroup

The plugin marks each host's tests `xdist_group("host-<name>")`, but xdist turns that mark into a nodeid
suffix by assigning `item._nodeid`, which pytest >= 9 no longer reads (a node's id is derived from its
structured `_id`): the groups silently vanish and one host's stages scatter over workers, each probing
the host again. So kvmqa gives xdist its own `loadgroup` scheduler, which reads the host straight from
the test id (`test_cpu[<host>-<check id>]`, the host being one of the run's targets).
"""

from __future__ import annotations

from typing import Any


def host_of(nodeid: str, hosts: list[str]) -> str | None:
    """The target a stage test is about: its parameter id starts with the host name and a dash."""
    start, end = nodeid.find("["), nodeid.rfind("]")
    if start < 0 or end < start:
        return None
    params = nodeid[start + 1 : end]
    return next((h for h in hosts if params == h or params.startswith(h + "-")), None)


def make_scheduler(config: Any, log: Any, hosts: list[str]) -> Any:
    """A LoadGroupScheduling whose groups are kvmqa's hosts (and the xdist_group suffix, if xdist set one)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    by_length = sorted(hosts, key=len, reverse=True)  # "hv1-a" before "hv1"

    class HostGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            host = host_of(nodeid, by_length)
            return f"host-{host}" if host is not None else str(super()._split_scope(nodeid))

    return HostGroupScheduling(config, log)
