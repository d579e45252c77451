"""The kvmqa pytest plugin: options, targets, host sessions, stage tests, and the reports.

Suites stay thin (the stages' dependencies and gatherers are one table in kvmqa/stages.py):

    from kvmqa.plugin import stage_test
    test_cpu = stage_test("cpu")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from kvmqa.baseline import BaselineError, finish_baseline, load_baseline
from kvmqa.inventory import InventoryError, load_inventory, targets_from_hosts
from kvmqa.model import Finding, Verdict
from kvmqa.options import RunOptions, engine_password_from
from kvmqa.profile import ProfileError, load_profile
from kvmqa.report.html import summary_html
from kvmqa.report.results import RunResults
from kvmqa.session import HostSession
from kvmqa.targets import Target
from kvmqa.waivers import WaiverError, finish_waivers, load_waivers

log = logging.getLogger("kvmqa")

RUN_KEY = pytest.StashKey["KvmqaRun"]()
FINDING_PROP = "kvmqa_finding"
HOST_PROP = "kvmqa_host_summary"


class KvmqaRun:
    """Per pytest process: options, profile, targets and their sessions; on the controller, the results."""

    def __init__(self, options: RunOptions, targets: list[Target], profile: Any, engine: dict[str, Any], suite_run: bool) -> None:
        self.options = options
        self.targets = targets
        self.profile = profile
        self.engine = engine
        self.suite_run = suite_run
        self.sessions: dict[str, HostSession] = {}
        self.results = RunResults()
        self.extra_sections: list[str] = []

    @property
    def peers(self) -> dict[str, HostSession]:
        """Sessions for every target, created on demand (a peer's facts are probed only when asked for)."""
        return _LazySessions(self)

    def session(self, name: str) -> HostSession:
        if name not in self.sessions:
            target = next(t for t in self.targets if t.name == name)
            self.sessions[name] = HostSession(target, self.profile, self.options, all_targets=self.targets, peers=self.peers)
            for hook in STAGE_HOOKS:
                self.sessions[name].stage_hooks.append(hook)
        return self.sessions[name]


class _LazySessions(dict):  # type: ignore[type-arg]
    def __init__(self, run: KvmqaRun) -> None:
        super().__init__()
        self._run = run

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self._run.targets)

    def __getitem__(self, name: str) -> HostSession:
        return self._run.session(name)


# Install mode and other rooms register callables here: hook(session, stage_def) runs before a stage's gate.
STAGE_HOOKS: list[Any] = []

# Install mode (kvmqa/actions): a plugin module that appends its hook to STAGE_HOOKS and reports the actions.
pytest_plugins = ("kvmqa.actions.hook", "kvmqa.fleet")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kvmqa", "kvmqa: KVM host conformance")
    g.addoption("--hosts", default=None, help="comma-separated targets: local://, ssh://user@host:port, paramiko://...")
    g.addoption("--inventory", default=None,
                help="kvmqa YAML inventory, or any Ansible inventory (file, directory, script, plugin YAML; needs kvmqa[ansible])")
    g.addoption("--limit", default=None, help="Ansible inventories: only the hosts matching this Ansible host pattern")
    g.addoption("--vault-password-file", default=None, help="Ansible inventories: the vault password file for !vault values")
    g.addoption("--sudo", action="store_true", help="run target commands through passwordless sudo")
    g.addoption("--ssh-identity-file", default=None, help="private key for ssh targets")
    g.addoption("--no-strict-host-keys", action="store_true", help="do NOT verify ssh host keys (explicit opt-out)")
    g.addoption("--known-hosts", default=None, help="known_hosts file for ssh targets (default: ~/.ssh/known_hosts)")
    g.addoption("--ssh-config", default=None,
                help="OpenSSH config file for ssh targets, instead of ~/.ssh/config (ProxyJump, host aliases)")
    g.addoption("--command-timeout", type=float, default=120.0, help="timeout for each remote command, seconds")
    g.addoption("--connect-timeout", type=float, default=10.0, help="ssh connect timeout, seconds")
    g.addoption("--profile", default=None, help="profile YAML (thresholds, minimum versions, levels)")
    g.addoption("--mode", choices=("verify", "install"), default="verify", help="verify (read-only, default) or install")
    g.addoption("--plan", action="store_true", help="install mode: print and report the actions, change nothing")
    g.addoption("--allow-emulation", action="store_true", help="first VM: boot under TCG when KVM is not usable (EMULATED)")
    g.addoption("--guest-image", default=None, help="first VM: also boot this qcow2 cloud image with a cloud-init seed")
    g.addoption("--cleanup", action="store_true", help="remove kvmqa-* leftovers of an earlier crashed run first")
    g.addoption("--reports-dir", default=None, help="where reports go (default: reports/)")
    g.addoption("--libvirt-user", default=None, help="install mode: add this user to the libvirt and kvm groups")
    g.addoption("--waivers", default=None, help="waivers YAML (check, hosts, justification, expires)")
    g.addoption("--save-baseline", default=None, help="record each host's facts and verdicts to this file")
    g.addoption("--compare-baseline", default=None, help="compare with a saved baseline; regressions fail the run")
    g.addoption("--engine-url", default=None, help="oVirt engine URL, e.g. https://engine.lab/ovirt-engine")
    g.addoption("--engine-user", default=None, help="oVirt engine user (default admin@internal)")
    g.addoption("--engine-password-file", default=None, help="file holding the engine password (or $KVMQA_ENGINE_PASSWORD)")
    g.addoption("--engine-ca", default=None, help="the engine CA (PEM) to trust")


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _existing_file(value: str | None, option: str) -> Path | None:
    path = _path(value)
    if path is not None and not path.is_file():
        raise pytest.UsageError(f"{option} {value}: no such file")
    return path


def _is_suite_run(config: pytest.Config) -> bool:
    """The product's suites (reports written) versus the project's own tests (tests/)."""
    root = Path(str(config.rootpath))
    args = [a.split("::")[0] for a in config.args] or ["."]
    for a in args:
        p = (Path(config.invocation_params.dir) / a).resolve()
        if not str(p).startswith(str((root / "tests").resolve())):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kvmqa_stage(name): a kvmqa stage test")
    opt = config.option
    suite_run = _is_suite_run(config)
    reports = Path(opt.reports_dir or "reports")
    options = RunOptions(
        hosts=[h for h in (opt.hosts or "").split(",") if h], inventory=_path(opt.inventory), sudo=opt.sudo,
        limit=opt.limit, vault_password_file=_path(opt.vault_password_file),
        ssh_identity_file=_path(opt.ssh_identity_file), strict_host_keys=not opt.no_strict_host_keys,
        command_timeout=opt.command_timeout, connect_timeout=opt.connect_timeout, profile_path=_path(opt.profile),
        mode=opt.mode, plan=opt.plan, allow_emulation=opt.allow_emulation, guest_image=_path(opt.guest_image),
        cleanup=opt.cleanup, reports_dir=reports, libvirt_user=opt.libvirt_user, waivers=_path(opt.waivers),
        save_baseline=_path(opt.save_baseline), compare_baseline=_path(opt.compare_baseline),
    )
    if suite_run:
        reports.mkdir(parents=True, exist_ok=True)
        if not getattr(opt, "htmlpath", None) and config.pluginmanager.hasplugin("html"):
            opt.htmlpath = str(reports / "report.html")
            opt.self_contained_html = True
        if not getattr(opt, "xmlpath", None):
            opt.xmlpath = str(reports / "junit.xml")
    try:
        profile = load_profile(options.profile_path)
        if options.allow_emulation:
            profile.allow_emulation = True
        common = {"command_timeout": options.command_timeout, "connect_timeout": options.connect_timeout,
                  "known_hosts": _path(opt.known_hosts), "identity_file": options.ssh_identity_file,
                  "ssh_config": _existing_file(opt.ssh_config, "--ssh-config")}
        engine: dict[str, Any] = {}
        ansible: dict[str, Any] = {"limit": options.limit, "vault_password_file": options.vault_password_file}
        kw: dict[str, Any] = {k: v for k, v in common.items() if v is not None}
        if options.inventory:
            targets, engine = load_inventory(options.inventory, sudo=options.sudo, strict_host_keys=options.strict_host_keys,
                                             **ansible, **kw)
        elif options.hosts:
            targets = targets_from_hosts(",".join(options.hosts), sudo=options.sudo, strict_host_keys=options.strict_host_keys,
                                         **ansible, **kw)
        else:
            targets = [Target.from_url("local://", **{k: v for k, v in common.items() if v is not None and k != "identity_file"})]
        load_waivers(options.waivers)  # read once per process; malformed -> UsageError naming file and field
        if options.compare_baseline:
            load_baseline(options.compare_baseline)
    except (InventoryError, ProfileError, WaiverError, BaselineError) as exc:
        if suite_run:
            RunResults(errors=[str(exc)]).write(reports / "results.json")
        raise pytest.UsageError(str(exc)) from None
    options.engine_url = opt.engine_url or engine.get("url")
    options.engine_user = opt.engine_user or engine.get("user") or "admin@internal"
    password_file = opt.engine_password_file or engine.get("password_file")
    try:
        options.engine_password = engine_password_from(str(Path(password_file).expanduser()) if password_file else None)
    except OSError as exc:
        raise pytest.UsageError(f"engine password file {password_file}: {exc.strerror}") from None
    options.engine_ca = _path(opt.engine_ca or engine.get("ca_file"))
    config.stash[RUN_KEY] = KvmqaRun(options, targets, profile, engine, suite_run)


def stage_test(name: str) -> Any:
    """The test function of one stage from kvmqa.stages: one test per host x check, in the stage's order."""
    from kvmqa.stages import stage_def

    stage = stage_def(name)
    checks = stage.checks

    @pytest.mark.kvmqa_stage(checks.stage)
    @pytest.mark.parametrize("check_id", checks.ids())
    def test_stage(kvmqa_host: HostSession, check_id: str, request: pytest.FixtureRequest) -> None:
        finding = kvmqa_host.evaluate(stage, checks.get(check_id))
        _apply_waiver(kvmqa_host, finding)
        props = request.node.user_properties  # not record_property: it warns under junit xunit2
        props.append((FINDING_PROP, json.dumps(finding.to_json(), default=str)))
        if checks.stage == "reach" or check_id == checks.ids()[-1]:
            props.append((HOST_PROP, json.dumps(host_summary(kvmqa_host), default=str)))
        assert_finding(finding)

    test_stage.__name__ = f"test_{checks.stage}"
    test_stage.kvmqa_stage = stage  # type: ignore[attr-defined]
    return test_stage


def _apply_waiver(session: HostSession, finding: Finding) -> None:
    try:
        from kvmqa.waivers import apply_waivers
    except ImportError:
        return
    apply_waivers(session, finding)


def assert_finding(finding: Finding) -> None:
    where = f"[{finding.host}] {finding.check_id}"
    if finding.verdict == Verdict.SKIP:
        pytest.skip(f"{where}: {finding.message}")
    if finding.verdict in (Verdict.FAIL, Verdict.ERROR):
        hint = f"\n  hint: {finding.hint}" if finding.hint else ""
        pytest.fail(f"{where} {finding.verdict.value.upper()}: {finding.message}{hint}", pytrace=False)


def host_summary(session: HostSession) -> dict[str, Any]:
    """A digest of a host's facts for the environment table and results.json."""
    f: dict[str, Any] = session._facts or {}
    session.save_facts()
    lv = f.get("libvirt", {})
    summary = {
        "host": session.name,
        "url": session.target.url,
        "roles": list(session.target.roles),
        "os": f.get("os", {}).get("pretty_name", ""),
        "kernel": f.get("kernel", {}).get("release", ""),
        "cpu": f.get("cpu", {}).get("model_name", ""),
        "cpus": f.get("cpu", {}).get("count", 0),
        "memory_gib": round(f.get("memory", {}).get("total_kib", 0) / 1024 / 1024, 1),
        "libvirt": lv.get("lib_version", ""),
        "qemu": lv.get("hypervisor_version", ""),
        "round_trips": f.get("round_trips", {}),
        "facts": str(session.host_dir / "facts.json"),
    }
    if f.get("reach", {}).get("error"):
        summary["error"] = f["reach"]["error"]
    return summary


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kvmqa_host" in metafunc.fixturenames:
        run: KvmqaRun = metafunc.config.stash[RUN_KEY]
        names = [t.name for t in run.targets]
        metafunc.parametrize("kvmqa_host", names, ids=names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def kvmqa_host(request: pytest.FixtureRequest) -> HostSession:
    run: KvmqaRun = request.config.stash[RUN_KEY]
    from kvmqa.fleet import prefetch_facts  # (a plugin module: imported by pytest_plugins first)

    prefetch_facts(request, run, request.param)  # fleet: this process probes all its hosts at once (kvmqa/fleet.py)
    return run.session(request.param)


@pytest.fixture(scope="session")
def kvmqa_run(request: pytest.FixtureRequest) -> KvmqaRun:
    return request.config.stash[RUN_KEY]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the xdist_group marks into nodeid suffixes
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each host's stages in order on one xdist worker: one group per host."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "kvmqa_host" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(name=f"host-{callspec.params['kvmqa_host']}"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect findings (also from xdist workers, through user_properties) on the process that reports."""
    config = getattr(report, "_kvmqa_config", None) or _CONFIG.get("config")
    if config is None or RUN_KEY not in config.stash:
        return
    run: KvmqaRun = config.stash[RUN_KEY]
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    for name, value in report.user_properties:
        if name == FINDING_PROP:
            run.results.add(Finding.from_json(json.loads(str(value))))
        elif name == HOST_PROP:
            data = json.loads(str(value))
            run.results.hosts.setdefault(data.pop("host"), {}).update(data)
    if report.when == "setup" and report.failed:
        run.results.errors.append(f"{report.nodeid}: setup failed: {str(report.longrepr)[-500:]}")


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report: Any) -> None:
    report.title = "kvmqa: KVM host conformance report"


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells: Any) -> None:
    cells.insert(1, '<th class="sortable" data-column-type="verdict">Verdict</th>')


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report: pytest.TestReport, cells: Any) -> None:
    verdict = ""
    for name, value in getattr(report, "user_properties", []):
        if name == FINDING_PROP:
            verdict = json.loads(value)["verdict"].upper()
    cells.insert(1, f'<td class="col-verdict">{verdict}</td>')


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session) -> None:
    run: KvmqaRun | None = session.config.stash.get(RUN_KEY, None)
    if run is None or not run.suite_run:
        return
    prefix.append(summary_html(run.results, run.extra_sections))


# Rooms that add report sections or change the exit status at the end (baselines, ...) register here.
FINISH_HOOKS: list[Any] = [finish_waivers, finish_baseline]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run: KvmqaRun | None = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    for s in run.sessions.values():
        s.save_facts()
        s.close_libvirt()
        s.target.close()
    if getattr(session.config, "workerinput", None) is not None or not run.suite_run:
        return  # xdist workers: the controller writes the reports
    for hook in FINISH_HOOKS:
        hook(run, session)
    try:
        from pytest_metadata.plugin import metadata_key

        meta = session.config.stash[metadata_key]
        for host, summary in run.results.hosts.items():
            meta[f"kvmqa host {host}"] = "; ".join(f"{k}: {v}" for k, v in summary.items() if v not in ("", None, [], {}))
        meta["kvmqa profile"] = f"{run.profile.name} ({run.profile.source})"
        meta["kvmqa mode"] = run.options.mode + (" (plan)" if run.options.plan else "")
    except (ImportError, KeyError):
        pass
    run.results.write(run.options.reports_dir / "results.json")
    if run.results.failed() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run: KvmqaRun | None = config.stash.get(RUN_KEY, None)
    if run is None or not run.suite_run or getattr(config, "workerinput", None) is not None or not run.results.findings:
        return
    terminalreporter.write_sep("=", "kvmqa: hosts x stages")
    terminalreporter.write_line(run.results.terminal_matrix())
    terminalreporter.write_line(f"reports: {run.options.reports_dir}/report.html, junit.xml, results.json")
