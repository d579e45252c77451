"""Fleet runs: many hosts in parallel, each host's stages on one xdist worker, every probe overlapped.

    pytest suites --inventory fleet.yaml -n 8          # -n alone means --dist loadgroup for kvmqa's suites

Two things make a fleet fast while each host still costs one probe and one libvirt connection:

1. Scheduling. The plugin marks each host's tests `xdist_group("host-<name>")`, but xdist turns that mark
   into a nodeid suffix by assigning `item._nodeid`, which pytest >= 9 no longer reads (a node's id is
   derived from its structured `_id`): the groups silently vanish and one host's stages scatter over
   workers, each probing the host again. kvmqa gives xdist its own `loadgroup` scheduler that reads the
   host from the test id (`test_cpu[<host>-<check id>]`) and deals the hosts out up front: the k-th host
   (in inventory order) goes to worker gw(k mod N). A worker therefore knows its hosts from the start.
2. Prefetching. Each process probes all of its hosts at once, in threads (the probe is one round trip,
   mostly waiting), then (verify mode only) gathers the read-only stages of PREFETCH_STAGES through the
   normal stage gate; a host's first test waits only for its own host. An unreachable host costs its own
   connect timeout, overlapped with everybody else's work. Install mode and --plan never prefetch stages:
   their actions must run in the suite's order.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from kvmqa.pytest_plugin.run import RUN_KEY

MAX_PREFETCH_THREADS = 16
# Stages whose gatherers only read, and cost round trips rather than time on the host (libvirt: ~25 RPCs).
PREFETCH_STAGES = ("libvirt",)
log = logging.getLogger("kvmqa")


def host_of(nodeid: str, hosts: list[str]) -> str | None:
    """The target a stage test is about: its parameter id starts with the host name and a dash."""
    start, end = nodeid.find("["), nodeid.rfind("]")
    if start < 0 or end < start:
        return None
    params = nodeid[start + 1 : end]
    return next(
        (h for h in sorted(hosts, key=len, reverse=True) if params == h or params.startswith(h + "-")), None
    )


def worker_index(workerid: str) -> int:
    return int(workerid[2:]) if workerid.startswith("gw") and workerid[2:].isdigit() else 0


def hosts_of_worker(hosts: list[str], workerid: str, workercount: int) -> list[str]:
    """The hosts the kvmqa scheduler deals to one worker (the same rule on both sides)."""
    return [h for k, h in enumerate(hosts) if k % max(workercount, 1) == worker_index(workerid)]


def make_scheduler(config: Any, log: Any, hosts: list[str]) -> Any:
    """--dist loadgroup: a scheduler whose groups are kvmqa's hosts, dealt out to workers up front."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class HostGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            host = host_of(nodeid, hosts)
            return f"host-{host}" if host is not None else str(super()._split_scope(nodeid))

        def schedule(self) -> None:
            if getattr(self, "collection", None) is not None:
                super().schedule()  # a re-schedule (a node was added)
                return
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            collection = list(next(iter(self.registered_collections.values())))
            self.collection = collection
            for nodeid in collection:
                self.workqueue.setdefault(self._split_scope(nodeid), {})[nodeid] = False
            nodes = sorted(self.nodes, key=lambda n: worker_index(str(n.workerinput["workerid"])))
            if not nodes:
                return
            other = 0
            for scope in list(self.workqueue):
                name = scope[len("host-") :] if scope.startswith("host-") else None
                if name in hosts:
                    node = nodes[hosts.index(name) % len(nodes)]
                else:  # tests that are not about one host: round robin
                    node, other = nodes[other % len(nodes)], other + 1
                self.workqueue.move_to_end(scope, last=False)
                self._assign_work_unit(node)
            for node in nodes:  # everything is dealt out: workers stop when their queue is empty
                node.shutdown()

    return HostGroupScheduling(config, log)


# -- pytest hooks (kvmqa.pytest_plugin.fleet is listed in kvmqa.pytest_plugin.plugin's pytest_plugins)
# -------------------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """`-n N` alone means --dist load, which scatters a host's stages (and would let two workers change one
    host
    at once in install mode): for kvmqa's suites it means loadgroup, one worker per host, stages in order."""
    run = config.stash.get(RUN_KEY, None)
    if (
        run is not None
        and (run.suite_run or run.options.install_steps)
        and getattr(config.option, "dist", "no") == "load"
    ):
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return make_scheduler(config, log, [t.name for t in config.stash[RUN_KEY].targets])


PREFETCH_KEY = pytest.StashKey[dict[str, "Future[Any]"]]()


def selected_hosts(session: pytest.Session, hosts: list[str]) -> list[str]:
    """The targets that have selected tests in this run (after -k/-m), in inventory order."""
    wanted = set()
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "kvmqa_host" in callspec.params:
            wanted.add(callspec.params["kvmqa_host"])
    return [h for h in hosts if h in wanted]


def selected_stages(session: pytest.Session) -> list[Any]:
    """The Stages (kvmqa.core.stage.Stage) of the selected stage tests, in run order."""
    stages: dict[str, Any] = {}
    for item in session.items:
        stage = getattr(getattr(item, "function", None), "kvmqa_stage", None)
        if stage is not None:
            stages.setdefault(stage.name, stage)
    return list(stages.values())


HANDOVER = "prefetched.json"  # beside a host's facts.json: its owner's prefetch is done (xdist workers)
HANDOVER_WAIT_S = 600.0  # how long another worker waits for it before probing the host itself


def warm_up(host: Any, stages: list[Any], hand_over: bool = False) -> None:
    """In a prefetch thread, which owns `host` (a HostSession) until it returns: probe, then gather stages.
    On an xdist worker (`hand_over`) the facts are then left for the run-scoped stages' worker, which would
    otherwise probe the host a second time (`adopt_prefetched`)."""
    host.facts  # noqa: B018 - the probe (an unreachable host becomes facts with a reach error)
    gathered = []
    for stage in stages:
        try:
            if host.prepare_stage(stage) is None:  # the normal gate: requires, roles, gatherers; remembered
                gathered.append(stage.name)
        except Exception:  # noqa: BLE001 - the stage's own test will meet the error again and report it
            log.debug("prefetch of %s on %s failed", stage.name, host.name, exc_info=True)
            break
    if hand_over:
        host.save_facts()
        tmp = host.host_dir / f".{HANDOVER}.tmp"
        tmp.write_text(json.dumps({"gathered": gathered}))
        tmp.replace(host.host_dir / HANDOVER)  # after facts.json: whoever sees it finds the facts complete


def adopt_prefetched(host: Any, timeout: float = HANDOVER_WAIT_S) -> bool:
    """On a worker that does not own `host`: wait for its owner's prefetch and take its facts (no probe of
    ours); False when none came in time (the caller probes, as without xdist)."""
    from kvmqa.core.facts import HostFacts

    marker = host.host_dir / HANDOVER
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if time.monotonic() > deadline:
            log.warning(
                "no prefetched facts of %s from its worker after %.0f s: probing it here", host.name, timeout
            )
            return False
        time.sleep(0.2)
    gathered = json.loads(marker.read_text()).get("gathered", [])
    host.adopt(HostFacts.load(host.host_dir / "facts.json"), gathered)
    return True


def on_loadgroup_worker(config: pytest.Config) -> bool:
    """An xdist worker under kvmqa's host scheduler: `--dist loadgroup` on the command line, or `-n N`
    alone, which the controller turned into loadgroup (the worker's own options still say `no`)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return False
    return bool(workerinput.get("kvmqa_loadgroup") or getattr(config.option, "loadgroup", False))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On the controller, per worker: tell it whether kvmqa's scheduler deals the hosts (see above)."""
    node.workerinput["kvmqa_loadgroup"] = node.config.getvalue("dist") == "loadgroup"


def my_hosts(config: pytest.Config, hosts: list[str]) -> list[str]:
    """The hosts this process will check: all of them, or on an xdist worker the ones it is dealt."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return hosts
    if not on_loadgroup_worker(config):
        return []  # other --dist modes: no way to know which hosts come here, so no prefetch
    return hosts_of_worker(hosts, str(workerinput["workerid"]), int(workerinput["workercount"]))


def start_prefetch(session: pytest.Session, run: Any) -> None:
    """Start probing every host of this process in threads, once. Runs when collection is done: on an xdist
    worker that is before the other workers are up and the tests arrive, so probes overlap worker start-up."""
    config = session.config
    if PREFETCH_KEY in config.stash:
        return
    futures = config.stash[PREFETCH_KEY] = {}
    names = my_hosts(config, selected_hosts(session, [t.name for t in run.targets]))
    if not names:
        return
    verify = not run.options.install_steps
    stages = [s for s in selected_stages(session) if verify and s.name in PREFETCH_STAGES]
    # on a worker, when a run-scoped stage (cluster) will read every host: leave the facts for its worker
    hand_over = on_loadgroup_worker(config) and any(s.scope == "run" for s in selected_stages(session))
    if hand_over:
        for name in names:
            (run.session(name).host_dir / HANDOVER).unlink(missing_ok=True)  # an earlier run's
    pool = ThreadPoolExecutor(min(len(names), MAX_PREFETCH_THREADS), thread_name_prefix="kvmqa-probe")
    config.add_cleanup(pool.shutdown)
    for name in names:
        host = run.session(name)  # created here, in the main thread
        futures[name] = pool.submit(warm_up, host, stages, hand_over)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or not run.suite_run or session.config.option.collectonly or not session.items:
        return
    start_prefetch(session, run)


def prefetch_facts(request: pytest.FixtureRequest, run: Any, host: str) -> None:
    """Wait for `host`'s prefetched facts (starting the prefetch if collection did not)."""
    start_prefetch(request.session, run)
    future = request.config.stash[PREFETCH_KEY].get(host)
    if future is not None:
        future.result()  # the probe turns an unreachable host into facts; anything else is a real error
    elif on_loadgroup_worker(request.config) and run.session(host).gathered_facts is None:
        adopt_prefetched(run.session(host))  # another worker owns it: its facts, not a second probe
