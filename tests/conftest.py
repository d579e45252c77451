"""Fixtures for the project's own tests: a real libvirtd and a real sshd on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Lab hosts (tests/lab): real KVM hosts booted under TCG, for tests marked `lab`.
from tests.lab.fixtures import (  # noqa: F401
    lab_arm64,
    lab_bookworm,
    lab_cluster,
    lab_cluster_factory,
    lab_install_arm64,
    lab_install_bookworm,
    lab_summary,
    lab_trixie,
    record_lab_test,
    start_prefetch,
    stop_prefetch,
)
from tests.support.daemons import start_libvirtd
from tests.support.sshd import Sshd, client_key, start_sshd


@pytest.fixture(scope="session")
def libvirtd() -> None:
    start_libvirtd()


@pytest.fixture(scope="session")
def ssh_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sshd")


@pytest.fixture(scope="session")
def sshd(ssh_workdir: Path) -> Iterator[Sshd]:
    server = start_sshd(ssh_workdir, client_key(ssh_workdir))
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    record_lab_test(report, item)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `lab_slow` (each boots a lab of its own) run when asked for: `-m` naming lab_slow, or
    KVMQA_LAB_SLOW=1; otherwise they are deselected (their mark says when they last passed)."""
    if "lab_slow" in (config.option.markexpr or "") or os.environ.get("KVMQA_LAB_SLOW") == "1":
        return
    slow = [item for item in items if item.get_closest_marker("lab_slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("lab_slow") is None]


def pytest_collection_finish(session: pytest.Session) -> None:
    start_prefetch(session)  # the lab hosts the selected tests use, booted in the background at nice 19


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_prefetch(session)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lab_summary(terminalreporter, config)
