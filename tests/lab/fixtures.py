"""pytest wiring for lab hosts: one session-scoped fixture per image, timings in the terminal summary.

`lab_bookworm` / `lab_trixie` build (or reuse) their image and boot it once per session (-smp 1: two can run at
once on two cores), and stop it at session end, also after failures; QEMU also dies with the pytest process
(PR_SET_PDEATHSIG) and its overlay lives in pytest's temp dir. When an image cannot be built or booted here
the tests that need it ERROR with the reason: a missing lab is never a silent skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.lab.boot import LabBootError, LabHost, start
from tests.lab.image import LAB_IMAGES, LabBuildError, build_image


@dataclass
class LabTimings:
    images: dict[str, str] = field(default_factory=dict)     # name -> "built in 113 s" / "cached"
    boots: dict[str, str] = field(default_factory=dict)      # name -> "ssh 42 s, systemd 45 s"
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


def lab_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[LabHost]:
    config = request.config
    timings = _timings(config)
    t0 = time.monotonic()
    try:
        image = build_image(LAB_IMAGES[name], log=lambda m: _say(config, m))
    except LabBuildError as exc:
        pytest.fail(f"lab image {name} cannot be built here: {exc}", pytrace=False)
    timings.images[name] = (f"built in {image.build_seconds:.0f} s" if image.build_seconds is not None
                            else f"from the cache ({time.monotonic() - t0:.1f} s)")
    _say(config, f"booting {name} ({image.dir.name}) ...")
    try:
        host = start(image, tmp_path_factory.mktemp(f"lab-{name}"), smp=1)
    except LabBootError as exc:
        pytest.fail(str(exc), pytrace=False)
    timings.boots[name] = f"ssh after {host.timings['ssh']:.0f} s, systemd up after {host.boot_seconds:.0f} s"
    _say(config, f"{name} up: {timings.boots[name]} ({host.url()})")
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def lab_bookworm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    yield from lab_host(request, tmp_path_factory, "bookworm")


@pytest.fixture(scope="session")
def lab_trixie(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    yield from lab_host(request, tmp_path_factory, "trixie")


def record_lab_test(report: pytest.TestReport, item: pytest.Item) -> None:
    if report.when == "call" and item.get_closest_marker("lab") is not None:
        _timings(item.config).tests.append((report.nodeid, report.duration, report.outcome))


def lab_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    t = config.stash.get(LAB_TIMINGS, None)
    if t is None or not (t.images or t.tests):
        return
    terminalreporter.section("kvmqa lab: images, boots, tests")
    for name, how in t.images.items():
        terminalreporter.write_line(f"image {name}: {how}; boot: {t.boots.get(name, 'not booted')}")
    for nodeid, seconds, outcome in t.tests:
        terminalreporter.write_line(f"{seconds:6.1f} s  {outcome:7}  {nodeid}")
