"""pytest wiring for lab hosts: one session-scoped fixture per image, timings in the terminal summary.

`lab_bookworm` / `lab_trixie` build (or reuse) their image and boot it once per session (-smp 1: two can run
at
once on two cores), and stop it at session end, also after failures; QEMU also dies with the pytest process
(PR_SET_PDEATHSIG) and its overlay lives in pytest's temp dir. When an image cannot be built or booted here
the tests that need it ERROR with the reason: a missing lab is never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab.boot import LabBootError, LabHost, start
from tests.lab.cluster import HostPlan, Lab, setup_cluster, start_lab
from tests.lab.image import LabBuildError
from tests.lab.image_arm64 import ALL_IMAGES, build_lab_image


@dataclass
class LabTimings:
    images: dict[str, str] = field(default_factory=dict)  # name -> "built in 113 s" / "cached"
    boots: dict[str, str] = field(default_factory=dict)  # name -> "ssh 42 s, systemd 45 s"
    clusters: dict[str, str] = field(
        default_factory=dict
    )  # name -> "up in 60 s, ..., cluster set up in 31 s"
    tests: list[tuple[str, float, str]] = field(default_factory=list)


LAB_TIMINGS = pytest.StashKey[LabTimings]()


def _timings(config: pytest.Config) -> LabTimings:
    if LAB_TIMINGS not in config.stash:
        config.stash[LAB_TIMINGS] = LabTimings()
    return config.stash[LAB_TIMINGS]


def _say(config: pytest.Config, msg: str) -> None:
    """A progress line on the terminal even while output is captured (builds and boots take minutes)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            reporter.write_line(f"kvmqa lab: {msg}")
    else:
        reporter.write_line(f"kvmqa lab: {msg}")


# The lab host fixtures and the image each boots, in the order the tests first need them (the prefetch's
# order).
# Every one is a host of its own (its own overlay).
LAB_FIXTURES = {
    "lab_bookworm": "bookworm",
    "lab_install_bookworm": "bookworm",
    "lab_trixie": "trixie",
    "lab_arm64": "bookworm-arm64",
    "lab_install_arm64": "bookworm-arm64",
}


def _boot(
    name: str, image_name: str, run_dir: Path, timings: LabTimings, say: Callable[[str], None]
) -> LabHost:
    """Build (or find) the image and boot it: the one way a lab fixture gets its host, prefetched or not."""
    t0 = time.monotonic()
    try:
        image = build_lab_image(ALL_IMAGES[image_name], log=say)
    except LabBuildError as exc:
        raise LabBootError(f"lab image {image_name} cannot be built here: {exc}") from exc
    timings.images.setdefault(
        image_name,
        f"built in {image.build_seconds:.0f} s"
        if image.build_seconds is not None
        else f"from the cache ({time.monotonic() - t0:.1f} s)",
    )
    say(f"booting {name} ({image.dir.name}) ...")
    host = start(image, run_dir, smp=1)
    timings.boots[name] = f"ssh after {host.timings['ssh']:.0f} s, systemd up after {host.boot_seconds:.0f} s"
    return host


class LabPrefetch:
    """The lab hosts the selected tests will use, built and booted in the background as soon as collection
    ends,
    at the lowest CPU priority (nice 19): they take only what the other tests leave idle (an empty-cache CI
    run
    spends minutes of non-lab tests with a core to spare), then get normal priority when a test takes them.

    One long-lived daemon thread does it all, in the order the tests need the hosts, and stays alive until the
    session ends: QEMU is started with PR_SET_PDEATHSIG, which fires when the *thread* that started it exits.
    """

    def __init__(
        self, wanted: list[str], tmp_path_factory: pytest.TempPathFactory, timings: LabTimings
    ) -> None:
        self.futures: dict[str, Future[LabHost]] = {name: Future() for name in wanted}
        self.taken: set[str] = set()
        self._done = threading.Event()
        # made here, in the main thread: tmp_path_factory is not thread-safe (two threads creating its base
        # directory at once get two, and mktemp then refuses its own path: "is not a normalized and relative
        # path")
        self._dirs = {name: tmp_path_factory.mktemp(f"lab-{name}") for name in wanted}
        self._timings = timings
        self._thread = threading.Thread(target=self._work, name="kvmqa-lab-prefetch", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        os.nice(19)  # this thread only (Linux); mmdebstrap and QEMU started from it inherit it
        for name, future in self.futures.items():
            if self._done.is_set():
                break
            try:
                future.set_result(
                    _boot(name, LAB_FIXTURES[name], self._dirs[name], self._timings, lambda m: None)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the test that needs this host
                future.set_exception(exc)
        self._done.wait()  # keep the thread (and with it every QEMU it started) alive until the session ends

    def take(self, name: str) -> LabHost:
        host = self.futures[name].result()
        self.taken.add(name)
        if host.process is not None:  # back to normal priority, every thread of QEMU (vCPUs included)
            for tid in os.listdir(f"/proc/{host.process.pid}/task"):
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        return host

    def close(self) -> None:
        """Stop the hosts no test took (a test that took one stops it itself), then let the thread end."""
        self._done.set()
        for name, future in self.futures.items():
            if name not in self.taken and future.done() and future.exception() is None:
                future.result().stop()


LAB_PREFETCH = pytest.StashKey[LabPrefetch]()


def start_prefetch(session: pytest.Session) -> None:
    """After collection: prefetch the lab hosts the selected tests use (none when no lab test is selected)."""
    wanted = [
        name
        for name in LAB_FIXTURES
        if any(name in getattr(item, "fixturenames", ()) for item in session.items)
    ]
    if wanted and os.environ.get("KVMQA_LAB_PREFETCH", "1") != "0":
        config = session.config
        # type: ignore[attr-defined]
        config.stash[LAB_PREFETCH] = LabPrefetch(wanted, config._tmp_path_factory, _timings(config))


def stop_prefetch(session: pytest.Session) -> None:
    prefetch = session.config.stash.get(LAB_PREFETCH, None)
    if prefetch is not None:
        prefetch.close()


def lab_host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[LabHost]:
    config = request.config
    prefetch = config.stash.get(LAB_PREFETCH, None)
    try:
        if prefetch is not None and name in prefetch.futures:
            if not prefetch.futures[name].done():
                _say(config, f"waiting for {name}, prepared in the background ...")
            host = prefetch.take(name)
        else:
            host = _boot(
                name,
                LAB_FIXTURES[name],
                tmp_path_factory.mktemp(f"lab-{name}"),
                _timings(config),
                lambda m: _say(config, m),
            )
    except LabBootError as exc:
        pytest.fail(str(exc), pytrace=False)
    _say(config, f"{name} up: {_timings(config).boots.get(name, '')} ({host.url()})")
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def lab_bookworm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabHost]:
    yield from lab_host(request, tmp_path_factory, "lab_bookworm")


@pytest.fixture(scope="session")
def lab_trixie(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    yield from lab_host(request, tmp_path_factory, "lab_trixie")


@pytest.fixture(scope="session")
def lab_install_bookworm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabHost]:
    """A bookworm lab host of its own for install mode, which breaks it first (never the shared
    lab_bookworm)."""
    yield from lab_host(request, tmp_path_factory, "lab_install_bookworm")


@pytest.fixture(scope="session")
def lab_arm64(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    """The arm64 lab host (bookworm-arm64 on QEMU's virt machine at EL2, KVM in VHE mode), for verify."""
    yield from lab_host(request, tmp_path_factory, "lab_arm64")


@pytest.fixture(scope="session")
def lab_install_arm64(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabHost]:
    """An arm64 lab host of its own for install mode and the first VM, which change it."""
    yield from lab_host(request, tmp_path_factory, "lab_install_arm64")


@contextlib.contextmanager
def _lab(
    config: pytest.Config, name: str, plans: Sequence[HostPlan], run_dir: Path, cluster: bool = True
) -> Iterator[Lab]:
    """A multi-host lab (tests/lab/cluster.py) with its timings recorded; cluster set-up unless cluster=False.
    Stopped (hosts, overlays, the segment) when the block ends, also after failures."""
    timings = _timings(config)
    t0 = time.monotonic()
    try:
        lab = start_lab(plans, run_dir, say=lambda m: _say(config, m))
    except (LabBootError, LabBuildError, RuntimeError) as exc:
        pytest.fail(f"lab {name} did not come up: {exc}", pytrace=False)
    try:
        for suite, image in lab.images.items():
            timings.images.setdefault(
                suite,
                f"built in {image.build_seconds:.0f} s"
                if image.build_seconds is not None
                else "from the cache",
            )
        for index, host in enumerate(lab.hosts):
            timings.boots[f"{name}/{lab.describe(index)}"] = (
                f"ssh after {host.timings['ssh']:.0f} s, systemd up after {host.boot_seconds:.0f} s"
            )
        how = f"up in {time.monotonic() - t0:.0f} s, segment joined in {lab.timings['join']:.0f} s"
        if cluster:
            setup_cluster(lab)
            how += f", cluster set up in {lab.timings['cluster']:.0f} s"
        timings.clusters[name] = how
        _say(config, f"{name}: {how}")
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def lab_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Two bookworm hosts (-cpu max) on a private segment as a cluster: qemu+ssh trust, the kvmqa-shared NFS
    pool, the kvmqa-lab network. Never at the same time as another lab (two hosts at most on two cores)."""
    run_dir = tmp_path_factory.mktemp("lab-cluster")
    with _lab(request.config, "lab_cluster", [HostPlan("bookworm")] * 2, run_dir) as lab:
        yield lab


@pytest.fixture
def lab_cluster_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., contextlib.AbstractContextManager[Lab]]:
    """Mixed labs: `with lab_cluster_factory(("bookworm", "trixie"), ("max", "Opteron_G5")) as lab:`
    (cluster=False: only booted and joined). One lab at a time; each is stopped when its block ends."""

    def make(
        suites: Sequence[str] = ("bookworm", "bookworm"),
        cpus: Sequence[str] = ("max", "max"),
        cluster: bool = True,
    ) -> contextlib.AbstractContextManager[Lab]:
        plans = [HostPlan(s, c) for s, c in zip(suites, cpus, strict=True)]
        name = "lab_mixed[" + ",".join(f"{p.suite}/{p.cpu}" for p in plans) + "]"
        return _lab(request.config, name, plans, tmp_path_factory.mktemp("lab-mixed"), cluster)

    return make


def record_lab_test(report: pytest.TestReport, item: pytest.Item) -> None:
    if report.when == "call" and item.get_closest_marker("lab") is not None:
        _timings(item.config).tests.append((report.nodeid, report.duration, report.outcome))


def lab_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    t = config.stash.get(LAB_TIMINGS, None)
    if t is None or not (t.images or t.tests):
        return
    terminalreporter.section("kvmqa lab: images, boots, tests")
    for name, how in t.images.items():
        terminalreporter.write_line(f"image {name}: {how}")
    for name, how in t.boots.items():
        terminalreporter.write_line(f"host {name}: {how}")
    for name, how in t.clusters.items():
        terminalreporter.write_line(f"lab {name}: {how}")
    for nodeid, seconds, outcome in t.tests:
        terminalreporter.write_line(f"{seconds:6.1f} s  {outcome:7}  {nodeid}")
