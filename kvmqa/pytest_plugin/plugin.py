"""The kvmqa pytest plugin: options, targets, host sessions, stage tests, and the reports.

Suites stay thin (each stage is declared once, in its folder kvmqa/stages/<name>/):

    from kvmqa.pytest_plugin.plugin import stage_test
    test_cpu = stage_test("cpu")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.inventory import InventoryError, load_inventory, targets_from_hosts
from kvmqa.config.options import RunOptions, engine_password_from
from kvmqa.config.profile import ProfileError, load_profile
from kvmqa.core.model import Finding, Verdict
from kvmqa.core.stage import StageError
from kvmqa.policy.baseline import BaselineError, load_baseline
from kvmqa.policy.waivers import WaiverError, apply_waivers, load_waivers, waive
from kvmqa.pytest_plugin import fleet, hookspecs, install, interrupt, policy
from kvmqa.pytest_plugin.fleet import prefetch_facts
from kvmqa.pytest_plugin.run import FINDING_PROP, HOST_PROP, RUN_KEY, KvmqaRun
from kvmqa.report.html import sections_html, summary_html
from kvmqa.report.results import RunResults, pairs_text
from kvmqa.session.cluster import ClusterSession
from kvmqa.session.host import HostSession
from kvmqa.site import load_site_stages
from kvmqa.stages import builtin, stage_def
from kvmqa.transport.target import Target

log = logging.getLogger("kvmqa")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """kvmqa's hookspecs, then its other rooms: install mode (pytest_kvmqa_before_stage), fleet scheduling and
    prefetch,
    waivers and baselines (pytest_kvmqa_finish), the record of an interrupted run."""
    pluginmanager.add_hookspecs(hookspecs)
    # testinfra (a dependency) registers its own pytest plugin, whose --hosts/--sudo/... clash with kvmqa's
    # and whose
    # `host` fixture kvmqa does not use: blocked (unregistered if it came first; see _shared_option)
    pluginmanager.set_blocked(TESTINFRA_PLUGIN)
    for module in (install, fleet, policy, interrupt):
        if not pluginmanager.is_registered(module):
            pluginmanager.register(module, module.__name__)


TESTINFRA_PLUGIN = "pytest11.testinfra"
TESTINFRA_OPTIONS = (
    "--hosts",
    "--sudo",
    "--ssh-identity-file",
    "--ssh-config",
)  # the same names and meanings


def _shared_option(group: Any, name: str, **kwargs: Any) -> None:
    """An option testinfra's plugin also defines: when that plugin was loaded before kvmqa's, its option (same
    dest,
    same meaning) stays and kvmqa reads it."""
    try:
        group.addoption(name, **kwargs)
    except ValueError:
        if name not in TESTINFRA_OPTIONS:
            raise


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kvmqa", "kvmqa: KVM host conformance")
    _shared_option(
        g,
        "--hosts",
        default=None,
        help="comma-separated targets: local://, ssh://user@host:port, paramiko://...",
    )
    g.addoption(
        "--inventory",
        default=None,
        help="kvmqa YAML inventory, or any Ansible inventory (file, directory, script, plugin YAML; needs "
        "kvmqa[ansible])",
    )
    g.addoption(
        "--limit", default=None, help="Ansible inventories: only the hosts matching this Ansible host pattern"
    )
    g.addoption(
        "--vault-password-file",
        default=None,
        help="Ansible inventories: the vault password file for !vault values",
    )
    _shared_option(g, "--sudo", action="store_true", help="run target commands through passwordless sudo")
    _shared_option(g, "--ssh-identity-file", default=None, help="private key for ssh targets")
    g.addoption(
        "--no-strict-host-keys", action="store_true", help="do NOT verify ssh host keys (explicit opt-out)"
    )
    g.addoption(
        "--known-hosts", default=None, help="known_hosts file for ssh targets (default: ~/.ssh/known_hosts)"
    )
    _shared_option(
        g,
        "--ssh-config",
        default=None,
        help="OpenSSH config file for ssh targets, instead of ~/.ssh/config (ProxyJump, host aliases)",
    )
    g.addoption(
        "--command-timeout", type=float, default=120.0, help="timeout for each remote command, seconds"
    )
    g.addoption("--connect-timeout", type=float, default=10.0, help="ssh connect timeout, seconds")
    g.addoption("--profile", default=None, help="profile YAML (thresholds, minimum versions, levels)")
    g.addoption(
        "--mode",
        choices=("verify", "install"),
        default="verify",
        help="verify (read-only, default) or install",
    )
    g.addoption(
        "--plan", action="store_true", help="install mode: print and report the actions, change nothing"
    )
    g.addoption(
        "--allow-emulation",
        action="store_true",
        help="first VM: boot under TCG when KVM is not usable (EMULATED)",
    )
    g.addoption(
        "--guest-image",
        default=None,
        help="first VM: also boot this qcow2 cloud image with a cloud-init seed",
    )
    g.addoption(
        "--cleanup", action="store_true", help="remove kvmqa-* leftovers of an earlier crashed run first"
    )
    g.addoption("--reports-dir", default=None, help="where reports go (default: reports/)")
    g.addoption(
        "--libvirt-user", default=None, help="install mode: add this user to the libvirt and kvm groups"
    )
    g.addoption("--waivers", default=None, help="waivers YAML (check, hosts, justification, expires)")
    g.addoption("--save-baseline", default=None, help="record each host's facts and verdicts to this file")
    g.addoption(
        "--compare-baseline", default=None, help="compare with a saved baseline; regressions fail the run"
    )
    g.addoption("--engine-url", default=None, help="oVirt engine URL, e.g. https://engine.lab/ovirt-engine")
    g.addoption("--engine-user", default=None, help="oVirt engine user (default admin@internal)")
    g.addoption(
        "--engine-password-file",
        default=None,
        help="file holding the engine password (or $KVMQA_ENGINE_PASSWORD)",
    )
    g.addoption("--engine-ca", default=None, help="the engine CA (PEM) to trust")
    g.addoption(
        "--site-checks",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of the lab's own stages and checks (repeatable; see docs/site-checks.md)",
    )
    parser.addini(
        "kvmqa_site_checks", "folders of site checks, relative to the ini file", type="paths", default=[]
    )


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
        hosts=[h for h in (opt.hosts or "").split(",") if h],
        inventory=_path(opt.inventory),
        sudo=opt.sudo,
        limit=opt.limit,
        vault_password_file=_path(opt.vault_password_file),
        ssh_identity_file=_path(opt.ssh_identity_file),
        strict_host_keys=not opt.no_strict_host_keys,
        command_timeout=opt.command_timeout,
        connect_timeout=opt.connect_timeout,
        profile_path=_path(opt.profile),
        mode=opt.mode,
        plan=opt.plan,
        allow_emulation=opt.allow_emulation,
        guest_image=_path(opt.guest_image),
        cleanup=opt.cleanup,
        reports_dir=reports,
        libvirt_user=opt.libvirt_user,
        waivers=_path(opt.waivers),
        save_baseline=_path(opt.save_baseline),
        compare_baseline=_path(opt.compare_baseline),
    )
    if suite_run:
        reports.mkdir(parents=True, exist_ok=True)
        if not getattr(opt, "htmlpath", None) and config.pluginmanager.hasplugin("html"):
            opt.htmlpath = str(reports / "report.html")
            opt.self_contained_html = True
        if not getattr(opt, "xmlpath", None):
            opt.xmlpath = str(reports / "junit.xml")
    try:
        site_dirs = [Path(d).expanduser() for d in opt.site_checks] + [
            Path(str(d)) for d in config.getini("kvmqa_site_checks")
        ]
        registry = builtin().with_stages(load_site_stages(site_dirs, declared=_declared_site_stages(config)))
        profile = load_profile(options.profile_path, registry.columns())
        if options.allow_emulation:
            profile.allow_emulation = True
        common = {
            "command_timeout": options.command_timeout,
            "connect_timeout": options.connect_timeout,
            "known_hosts": _path(opt.known_hosts),
            "identity_file": options.ssh_identity_file,
            "ssh_config": _existing_file(opt.ssh_config, "--ssh-config"),
        }
        engine: dict[str, Any] = {}
        ansible: dict[str, Any] = {"limit": options.limit, "vault_password_file": options.vault_password_file}
        kw: dict[str, Any] = {k: v for k, v in common.items() if v is not None}
        if options.inventory:
            targets, engine = load_inventory(
                options.inventory,
                sudo=options.sudo,
                strict_host_keys=options.strict_host_keys,
                **ansible,
                **kw,
            )
        elif options.hosts:
            targets = targets_from_hosts(
                ",".join(options.hosts),
                sudo=options.sudo,
                strict_host_keys=options.strict_host_keys,
                **ansible,
                **kw,
            )
        else:
            targets = [
                Target.from_url(
                    "local://", **{k: v for k, v in common.items() if v is not None and k != "identity_file"}
                )
            ]
        load_waivers(options.waivers)  # read once per process; malformed -> UsageError naming file and field
        if options.compare_baseline:
            load_baseline(options.compare_baseline)
    except (InventoryError, ProfileError, WaiverError, BaselineError, StageError) as exc:
        if suite_run:
            RunResults(errors=[str(exc)]).write(reports / "results.json")
        raise pytest.UsageError(str(exc)) from None
    options.engine_url = opt.engine_url or engine.get("url")
    options.engine_user = opt.engine_user or engine.get("user") or "admin@internal"
    password_file = opt.engine_password_file or engine.get("password_file")
    try:
        options.engine_password = engine_password_from(
            str(Path(password_file).expanduser()) if password_file else None
        )
    except OSError as exc:
        raise pytest.UsageError(f"engine password file {password_file}: {exc.strerror}") from None
    options.engine_ca = _path(opt.engine_ca or engine.get("ca_file"))
    run = KvmqaRun(config, options, targets, profile, engine, suite_run, registry)
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(RunRecorder(run), "kvmqa-run")


def _declared_site_stages(config: pytest.Config) -> list[tuple[Path, object]]:
    """What plugins and conftests return from pytest_kvmqa_site_stages, with the file that returned it."""
    out: list[tuple[Path, object]] = []
    for impl in config.hook.pytest_kvmqa_site_stages.get_hookimpls():
        where = Path(getattr(impl.plugin, "__file__", None) or impl.plugin_name)
        try:
            result: Any = impl.function(config=config)
        except Exception as exc:  # noqa: BLE001 - a lab plugin's bug is bad input: one line
            raise StageError(
                f"site checks {where}: pytest_kvmqa_site_stages raised {type(exc).__name__}: {exc}"
            ) from None
        out += [(where, stage) for stage in (result or [])]
    return out


def stage_test(name: str) -> Any:
    """The test function of one built-in stage (kvmqa/stages/<name>): one test per host x check, in the
    stage's order."""
    stage = stage_def(name)
    checks = stage.checks
    if stage.scope == "run":
        return run_stage_test(stage)

    @pytest.mark.kvmqa_stage(checks.stage)
    @pytest.mark.parametrize("check_id", checks.ids())
    def test_stage(kvmqa_host: HostSession, check_id: str, request: pytest.FixtureRequest) -> None:
        run_check(kvmqa_host, stage, check_id, request)

    test_stage.__name__ = f"test_{checks.stage}"
    test_stage.kvmqa_stage = stage  # type: ignore[attr-defined]
    return test_stage


def run_check(host: HostSession, stage: Any, check_id: str, request: pytest.FixtureRequest) -> None:
    """One stage test: evaluate (through the gate), apply waivers, hand the finding to the report, assert."""
    finding = host.evaluate(stage, stage.checks.get(check_id))
    apply_waivers(host, finding)
    props = request.node.user_properties  # not record_property: it warns under junit xunit2
    props.append((FINDING_PROP, json.dumps(finding.to_json(), default=str)))
    if stage.name == "reach" or check_id == stage.checks.ids()[-1]:
        props.append((HOST_PROP, json.dumps(host.summary(), default=str)))
    assert_finding(finding)


def run_stage_test(stage: Any) -> Any:
    """The test function of a run-scoped stage (cluster): one test per check, about the run's hosts
    together."""

    @pytest.mark.kvmqa_stage(stage.name)
    @pytest.mark.parametrize("check_id", stage.checks.ids())
    def test_run_stage(kvmqa_cluster: ClusterSession, check_id: str, request: pytest.FixtureRequest) -> None:
        why = kvmqa_cluster.not_applicable()
        if why is not None:  # no pseudo-host row: the run has no cluster to report on
            pytest.skip(f"[{kvmqa_cluster.name}] {check_id}: {why}")
        finding = kvmqa_cluster.evaluate(stage, stage.checks.get(check_id))
        waive(finding, load_waivers(kvmqa_cluster.options.waivers))
        props = request.node.user_properties
        props.append((FINDING_PROP, json.dumps(finding.to_json(), default=str)))
        if check_id == stage.checks.ids()[-1]:  # the members' round trips now include the cluster's own
            summaries = [{"host": kvmqa_cluster.name, **kvmqa_cluster.summary()}]
            summaries += [kvmqa_cluster.member(n).summary() for n in kvmqa_cluster.member_names()]
            props += [(HOST_PROP, json.dumps(s, default=str)) for s in summaries]
        assert_finding(finding)

    test_run_stage.__name__ = f"test_{stage.name}"
    test_run_stage.kvmqa_stage = stage  # type: ignore[attr-defined]
    return test_run_stage


def site_stage_test() -> Any:
    """The test function of the run's site stages (--site-checks): one test per host x site check."""

    @pytest.mark.kvmqa_stage("site")
    def test_site(kvmqa_host: HostSession, kvmqa_site_check: str, request: pytest.FixtureRequest) -> None:
        stage = kvmqa_host.stages.get(kvmqa_site_check.split(".", 1)[0])
        run_check(kvmqa_host, stage, kvmqa_site_check, request)

    test_site.kvmqa_site = True  # type: ignore[attr-defined]
    return test_site


def assert_finding(finding: Finding) -> None:
    where = f"[{finding.host}] {finding.check_id}"
    if finding.verdict == Verdict.SKIP:
        pytest.skip(f"{where}: {finding.message}")
    if finding.verdict in (Verdict.FAIL, Verdict.ERROR):
        hint = f"\n  hint: {finding.hint}" if finding.hint else ""
        pytest.fail(f"{where} {finding.verdict.value.upper()}: {finding.message}{hint}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[Any] | None:
    """No site stages (--site-checks): the site test is not collected at all (not an empty parameter set)."""
    if getattr(obj, "kvmqa_site", False) and not any(
        s.site for s in collector.config.stash[RUN_KEY].registry
    ):
        return []
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kvmqa_host" in metafunc.fixturenames:
        run: KvmqaRun = metafunc.config.stash[RUN_KEY]
        names = [t.name for t in run.targets]
        metafunc.parametrize("kvmqa_host", names, ids=names, indirect=True, scope="session")
    if "kvmqa_site_check" in metafunc.fixturenames:
        run = metafunc.config.stash[RUN_KEY]
        metafunc.parametrize("kvmqa_site_check", [c.id for s in run.registry if s.site for c in s.checks])


@pytest.fixture(scope="session")
def kvmqa_host(request: pytest.FixtureRequest) -> HostSession:
    run: KvmqaRun = request.config.stash[RUN_KEY]
    prefetch_facts(
        request, run, request.param
    )  # fleet: this process probes all its hosts at once (kvmqa/pytest_plugin/fleet.py)
    return run.session(request.param)


@pytest.fixture(scope="session")
def kvmqa_cluster(request: pytest.FixtureRequest) -> ClusterSession:
    """The run's hosts together (run-scoped stages), once their prefetched facts are in."""
    run: KvmqaRun = request.config.stash[RUN_KEY]
    for target in run.targets:
        prefetch_facts(request, run, target.name)
    return run.cluster()


@pytest.fixture(scope="session")
def kvmqa_run(request: pytest.FixtureRequest) -> KvmqaRun:
    return request.config.stash[RUN_KEY]


@pytest.hookimpl(
    tryfirst=True
)  # before xdist's own hook, which turns the xdist_group marks into nodeid suffixes
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each host's stages in order on one xdist worker: one group per host."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "kvmqa_host" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(name=f"host-{callspec.params['kvmqa_host']}"))


class RunRecorder:
    """Registered per run: collects findings (also from xdist workers, through user_properties) where reports
    are written."""

    def __init__(self, run: KvmqaRun) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        results = self.run.results
        for name, value in report.user_properties:
            if name == FINDING_PROP:
                results.add(Finding.from_json(json.loads(str(value))))
            elif name == HOST_PROP:
                data = json.loads(str(value))
                results.hosts.setdefault(data.pop("host"), {}).update(data)
        if report.when == "setup" and report.failed:
            results.errors.append(f"{report.nodeid}: setup failed: {str(report.longrepr)[-500:]}")


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
def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    run: KvmqaRun | None = session.config.stash.get(RUN_KEY, None)
    if run is None or not run.suite_run:
        return
    prefix.append(summary_html(run.results, sections_html(run.results)))


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
    session.config.hook.pytest_kvmqa_finish(run=run, session=session)
    try:
        from pytest_metadata.plugin import metadata_key

        meta = session.config.stash[metadata_key]
        for host, summary in run.results.hosts.items():
            meta[f"kvmqa host {host}"] = "; ".join(
                f"{k}: {v}" for k, v in summary.items() if v not in ("", None, [], {})
            )
        meta["kvmqa profile"] = f"{run.profile.name} ({run.profile.source})"
        meta["kvmqa mode"] = run.options.mode + (" (plan)" if run.options.plan else "")
    except (ImportError, KeyError):
        pass
    run.results.write(run.options.reports_dir / "results.json")
    if run.results.failed() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run: KvmqaRun | None = config.stash.get(RUN_KEY, None)
    if (
        run is None
        or not run.suite_run
        or getattr(config, "workerinput", None) is not None
        or not run.results.findings
    ):
        return
    terminalreporter.write_sep("=", "kvmqa: hosts x stages")
    terminalreporter.write_line(run.results.terminal_matrix())
    for pseudo, pairs in run.results.pair_matrices().items():
        title = f"kvmqa: {pseudo}: can the source (row) take its guests to the destination"
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(pairs_text(pairs))
    terminalreporter.write_line(f"reports: {run.options.reports_dir}/report.html, junit.xml, results.json")
