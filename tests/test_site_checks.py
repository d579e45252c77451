"""Site checks (docs/site-checks.md): a lab's own stages from its own folder, run like built-in ones.

The example folder docs/examples/site-checks (stage `acme`) runs against local://; its verdicts are compared
with
this machine's state read here independently (sysfs, the NTP configuration files, /dev/kvm). Bad folders are
given in tmp_path, each must give one line and no traceback, in pytest and in `python -m kvmqa checks`.
"""

from __future__ import annotations

import glob
import grp
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from kvmqa.config.profile import profile_from_dict
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.stage import StageError
from kvmqa.site import load_site_stages
from kvmqa.stages import builtin
from tests.support.facts import facts as recorded_facts
from tests.support.facts import parse
from tests.support.suite import ROOT, SuiteRun, run_suite

EXAMPLE = ROOT / "docs" / "examples" / "site-checks"
SITE_PATHS = ("suites/test_00_reach.py", "suites/test_70_site.py")
ACME = ("acme.hugepages-1g", "acme.ntp-servers", "acme.kvm-device-mode")


# -- this machine, read without kvmqa
# ----------------------------------------------------------------------------
def real_1g_pages() -> int | None:
    pool = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")
    return int(pool.read_text()) if pool.exists() else None


def real_ntp_servers(etc: Path = Path("/etc")) -> list[str]:
    """chrony `server`/`pool` lines and systemd-timesyncd `NTP=` entries, as acme's snippet reads them."""
    servers = []
    chrony = [
        etc / "chrony/chrony.conf",
        etc / "chrony.conf",
        *sorted(Path(p) for p in glob.glob(f"{etc}/chrony/conf.d/*.conf")),
        *sorted(Path(p) for p in glob.glob(f"{etc}/chrony/sources.d/*.sources")),
    ]
    for path in chrony:
        if path.is_file():
            servers += [
                w[1]
                for w in (line.split() for line in path.read_text().splitlines())
                if len(w) > 1 and w[0] in ("server", "pool")
            ]
    for path in [
        etc / "systemd/timesyncd.conf",
        *sorted(Path(p) for p in glob.glob(f"{etc}/systemd/timesyncd.conf.d/*.conf")),
    ]:
        if path.is_file():
            servers += [
                s
                for line in path.read_text().splitlines()
                if line.split("=", 1)[0] == "NTP"
                for s in line.split("=", 1)[1].split()
            ]
    return servers


def expected_acme(
    ntp_servers: list[str], wanted_ntp: tuple[str, ...] = (), wanted_1g: int = 1
) -> dict[str, str]:
    pages = real_1g_pages()
    out = {"acme.hugepages-1g": "pass" if pages is not None and pages >= wanted_1g else "fail"}
    ok = bool(ntp_servers) and all(s in ntp_servers for s in wanted_ntp)
    out["acme.ntp-servers"] = "pass" if ok else "warn"
    if not Path("/dev/kvm").exists():
        out["acme.kvm-device-mode"] = "skip"  # cpu.kvm-device fails
    else:
        st = os.stat("/dev/kvm")
        out["acme.kvm-device-mode"] = (
            "pass" if grp.getgrgid(st.st_gid).gr_name == "kvm" and not st.st_mode & 0o007 else "fail"
        )
    return out


def acme_snippet_output() -> tuple[int, str]:
    """The example's probe snippet run here by itself (probe library + snippet), as the section kvmqa
    parses."""
    lib = resources.files("kvmqa.gather.probe").joinpath("00-lib.sh").read_text()
    probe = load_site_stages([EXAMPLE])[0].probe
    out = subprocess.run(["sh", "-c", lib + probe], capture_output=True, text=True, check=True).stdout
    m = re.match(r"@@kvmqa:acme\.ntp rc=(\d+)\n(.*)", out, re.S)
    assert m, out
    return int(m.group(1)), m.group(2).rstrip("\n")


def terminal_matrix(stdout: str) -> dict[str, dict[str, str]]:
    lines = stdout.split("kvmqa: hosts x stages", 1)[1].splitlines()[1:]
    header = lines[0].split()
    rows = {}
    for line in lines[1:]:
        if line.startswith("reports:"):
            break
        cells = line.split()
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def junit_cases(path: Path) -> dict[str, tuple[str, str, dict[str, object]]]:
    """testcase name -> (outcome, message, the kvmqa finding recorded in its properties)."""
    out = {}
    for tc in ET.parse(path).iter("testcase"):
        outcome, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.attrib.get("message", "")
        props = {p.attrib["name"]: p.attrib["value"] for p in tc.iter("property")}
        out[tc.attrib["name"]] = (outcome, message, json.loads(props.get("kvmqa_finding", "{}")))
    return out


def site_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def stage_module(name: str, order: int = 70, checks: str = "", **stage_args: str) -> str:
    """A small site stage: `checks` are extra decorated functions over the CHECKS of stage `name`."""
    extra = "".join(f", {k}={v}" for k, v in stage_args.items())
    return (
        f"from kvmqa.api import Stage, StageChecks, failed, passed\n"
        f"CHECKS = StageChecks({name!r})\n"
        f"@CHECKS.check('{name}.first', 'the first check', hint='fix it')\n"
        f"def first(facts, profile):\n    return passed('fine')\n"
        f"{textwrap.dedent(checks)}"
        f"STAGE = Stage(name={name!r}, order={order}, title='{name} lab', checks=CHECKS{extra})\n"
    )


# -- (a) the example stage in every report
# ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def acme_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    return run_suite(
        tmp_path_factory.mktemp("acme"), "--site-checks", str(EXAMPLE), paths=SITE_PATHS, timeout=300
    )


def test_acme_verdicts_match_this_machine(acme_run: SuiteRun) -> None:
    expected = expected_acme(real_ntp_servers())
    found = {cid: f for (host, cid), f in acme_run.findings("local").items() if cid.startswith("acme.")}
    assert {cid: f["verdict"] for cid, f in found.items()} == expected, acme_run.stdout[-3000:]
    for cid, f in found.items():
        assert f["stage"] == "acme" and f["level"] == {"acme.ntp-servers": "warn"}.get(cid, "fail")
        assert bool(f["hint"]) == (f["verdict"] in ("fail", "warn")), f
    assert found["acme.hugepages-1g"]["details"].get("reserved") == real_1g_pages()
    assert found["acme.ntp-servers"]["details"]["configured"] == real_ntp_servers()
    failures = [r for r in acme_run.results["results"] if r["verdict"] in ("fail", "error")]
    assert acme_run.rc == (1 if failures else 0), acme_run.stdout[-3000:]


def test_acme_probe_snippet_is_part_of_the_one_probe(acme_run: SuiteRun) -> None:
    facts = json.loads((acme_run.reports / "local" / "facts.json").read_text())
    rc, out = acme_snippet_output()
    assert facts["acme"]["ntp"] == {"rc": rc, "out": out}
    assert "@@kvmqa:acme.ntp rc=" in (acme_run.reports / "local" / "probe.txt").read_text()
    assert acme_run.results["hosts"]["local"]["round_trips"]["ssh_commands"] == 1  # still one round trip


def test_acme_in_the_matrix_junit_and_html(acme_run: SuiteRun) -> None:
    verdicts = expected_acme(real_ntp_servers())
    ran = set(verdicts.values()) - {"skip"}
    cell = next(v for v in ("error", "fail", "warn", "pass") if v in ran) if ran else "skip"
    results = acme_run.results
    assert results["matrix"]["local"] == {"reach": "pass", "acme": cell}
    assert list(terminal_matrix(acme_run.stdout)["local"].items()) == [
        ("reach", "PASS"),
        ("acme", cell.upper()),
    ]

    cases = junit_cases(acme_run.reports / "junit.xml")
    for cid, verdict in verdicts.items():
        outcome, message, finding = cases[f"test_site[local-{cid}]"]
        assert finding["check_id"] == cid and finding["verdict"] == verdict
        assert outcome == {"fail": "failure", "skip": "skipped"}.get(verdict, "passed"), (cid, outcome)
        if verdict == "fail":
            assert f"[local] {cid} FAIL" in message

    html = (acme_run.reports / "report.html").read_text()
    matrix = re.search(r'<table id="kvmqa-matrix">(.*?)</table>', html, re.S)
    assert matrix and "<th>acme</th>" in matrix.group(1)
    assert f'kvmqa-{cell}" style="background:' in matrix.group(1).split("<th>local</th>")[1].split("</td>")[1]
    details = re.search(r'<details id="kvmqa-local-acme".*?</details>', html, re.S)
    assert details, "no acme details in report.html"
    for cid, verdict in verdicts.items():
        assert re.search(rf"<code>{re.escape(cid)}</code>.*?kvmqa-{verdict}", details.group(0), re.S), cid
        assert f"test_site[local-{cid}]" in html  # pytest-html's own results table


def test_acme_follows_the_profile_on_a_host_with_acme_ntp(tmp_path: Path) -> None:
    """The same run with ACME's NTP servers configured: /etc overlaid in a private mount namespace (root
    only);
    the machine's /etc is never written."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    upper, work = tmp_path / "upper", tmp_path / "work"
    site_folder(
        upper,
        {
            "chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n",
            "chrony/sources.d/acme.sources": "server ntp1.acme.lab iburst\n",
            "systemd/timesyncd.conf.d/acme.conf": "[Time]\nNTP=ntp2.acme.lab ntp3.acme.lab\n",
        },
    )
    work.mkdir()
    before = real_ntp_servers()
    profile = tmp_path / "acme.yaml"
    profile.write_text("acme: {hugepages_1g: 0, ntp_servers: [ntp1.acme.lab, ntp2.acme.lab]}\n")
    pytest_cmd = [
        sys.executable,
        "-m",
        "pytest",
        *SITE_PATHS,
        "--reports-dir",
        str(tmp_path / "r"),
        "-q",
        "-p",
        "no:randomly",
        "--site-checks",
        str(EXAMPLE),
        "--profile",
        str(profile),
    ]
    script = f'mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *pytest_cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    run = SuiteRun(proc.returncode, proc.stdout + proc.stderr, tmp_path / "r")
    overlaid = sorted(
        set(real_ntp_servers()) | {"2.debian.pool.ntp.org", "ntp1.acme.lab", "ntp2.acme.lab", "ntp3.acme.lab"}
    )
    assert sorted(set(run.findings()[("local", "acme.ntp-servers")]["details"]["configured"])) == overlaid, (
        run.stdout[-3000:]
    )
    expected = expected_acme(overlaid, ("ntp1.acme.lab", "ntp2.acme.lab"), wanted_1g=0)
    assert {cid: run.verdict("local", cid) for cid in ACME} == expected
    assert (
        real_ntp_servers() == before and not Path("/etc/systemd/timesyncd.conf.d/acme.conf").exists()
    )  # /etc untouched


def test_waivers_name_site_checks(tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n  - check: acme.hugepages-1g\n    hosts: local\n    justification: ACME-7 CI VMs\n"
        "    expires: 2099-12-31\n"
    )
    run = run_suite(
        tmp_path / "r",
        "--site-checks",
        str(EXAMPLE),
        "--waivers",
        str(waivers),
        paths=SITE_PATHS,
        timeout=300,
    )
    real = expected_acme(real_ntp_servers())["acme.hugepages-1g"]
    assert run.verdict("local", "acme.hugepages-1g") == ("waived" if real == "fail" else "pass"), run.stdout[
        -3000:
    ]


def test_site_checks_from_the_ini_option(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "-o", f"kvmqa_site_checks={EXAMPLE}", paths=SITE_PATHS, timeout=300)
    assert {cid for (_, cid) in run.findings() if cid.startswith("acme.")} == set(ACME), run.stdout[-3000:]


def test_no_site_checks_no_site_tests(tmp_path: Path) -> None:
    run = run_suite(tmp_path, paths=SITE_PATHS, timeout=300)
    assert run.rc == 0 and run.results["matrix"]["local"] == {"reach": "pass"}, run.stdout[-3000:]
    assert "test_site" not in (tmp_path / "junit.xml").read_text()


# -- (b) a site check whose required check fails is skipped naming the root
# -----------------------------------------
def gated_folder(root: Path, marker: Path) -> Path:
    """lab1.marker passes when `marker` exists on the host (its own probe section); lab1.after-marker requires
    it;
    stage lab2 requires lab1.after-marker; lab1.kvm-module-loaded requires the built-in cpu.kvm-module."""
    lab1 = stage_module(
        "lab1",
        probe=repr(f"_kq_sec lab1.marker cat {marker}\n"),
        checks="""
        @CHECKS.check('lab1.marker', 'the marker file exists', hint='create it')
        def marker(facts, profile):
            section = facts['lab1']['marker']
            return passed(section['out']) if section['rc'] == 0 else failed(f"no marker (rc {section['rc']})")
        @CHECKS.check('lab1.after-marker', 'needs the marker', requires=('lab1.marker',))
        def after(facts, profile):
            return passed('ran')
        @CHECKS.check('lab1.kvm-module-loaded', 'needs a KVM module', requires=('cpu.kvm-module',))
        def kvm(facts, profile):
            return passed('ran')
    """,
    )
    return site_folder(
        root, {"lab1.py": lab1, "lab2.py": stage_module("lab2", order=71, requires="('lab1.after-marker',)")}
    )


def test_required_check_failing_skips_naming_the_root(tmp_path: Path) -> None:
    marker = tmp_path / "marker"  # not created: lab1.marker fails
    run = run_suite(
        tmp_path / "r",
        "--site-checks",
        str(gated_folder(tmp_path / "site", marker)),
        paths=SITE_PATHS,
        timeout=300,
    )
    f = run.findings("local")
    assert f[("local", "lab1.marker")]["verdict"] == "fail", run.stdout[-3000:]
    after = f[("local", "lab1.after-marker")]
    assert after["verdict"] == "skip" and after["details"]["blocked_by"] == "lab1.marker"
    assert after["message"].startswith(
        "skipped: depends on lab1.marker, which is fail on local: no marker (rc 1)"
    )
    for cid in (
        "lab2.first",
    ):  # a whole stage that requires a skipped check names the root, not the skipped one
        assert (
            f[("local", cid)]["verdict"] == "skip"
            and f[("local", cid)]["details"]["blocked_by"] == "lab1.marker"
        )
        assert "because lab1.marker did not pass" in f[("local", cid)]["message"]
    kvm = f[("local", "lab1.kvm-module-loaded")]
    if any(Path("/sys/module", m).exists() for m in ("kvm_intel", "kvm_amd")):
        assert kvm["verdict"] == "pass"
    else:  # this machine (kvm_pvm): the built-in cpu.kvm-module fails
        assert kvm["verdict"] == "skip" and kvm["details"]["blocked_by"] == "cpu.kvm-module"
    cases = junit_cases(tmp_path / "r" / "junit.xml")
    assert cases["test_site[local-lab1.after-marker]"][0] == "skipped"
    assert "depends on lab1.marker" in cases["test_site[local-lab1.after-marker]"][1]
    assert run.results["matrix"]["local"] == {"reach": "pass", "lab1": "fail", "lab2": "skip"}

    marker.write_text("here\n")  # the same folder, the marker present: nothing is skipped any more
    again = run_suite(tmp_path / "r2", "--site-checks", str(tmp_path / "site"), paths=SITE_PATHS, timeout=300)
    for cid in ("lab1.marker", "lab1.after-marker", "lab2.first"):
        assert again.verdict("local", cid) == "pass", again.stdout[-3000:]
    assert again.findings()[("local", "lab1.marker")]["message"] == "here"


# -- (c) bad folders: one line, no traceback, recorded in results.json
# ---------------------------------------------
BAD = {
    "missing folder": (None, r"site checks {dir}: no such folder"),
    "syntax error": (
        {"lab.py": "from kvmqa.api import Stage\nSTAGE = = 1\n"},
        r"site checks {dir}/lab.py:2: cannot load: SyntaxError: invalid syntax",
    ),
    "error on import": (
        {"lab.py": "import kvmqa_no_such_module\n"},
        r"site checks {dir}/lab.py:1: cannot load: ModuleNotFoundError: No module named "
        r"'kvmqa_no_such_module'",
    ),
    "a check without the stage's prefix": (
        {
            "lab.py": stage_module(
                "lab", checks="@CHECKS.check('cpu.mine', 'x')\ndef mine(f, p):\n    return passed('')\n"
            )
        },
        r"site checks {dir}/lab.py:6: cannot load: ValueError: check id 'cpu.mine' must start with 'lab'.",
    ),
    "a built-in stage's name": (
        {"cpu.py": stage_module("cpu")},
        r"site checks {dir}/cpu.py: stage 'cpu' is a built-in stage's name; a site stage needs a "
        r"prefix of its own \(e.g. the lab's name\)",
    ),
    "a fact section's name": (
        {"hp.py": stage_module("hugepages")},
        r"site checks {dir}/hp.py: stage 'hugepages' would share facts\['hugepages'\] with kvmqa's own "
        r"facts; choose a prefix of the lab's own",
    ),
    "order below 70": (
        {"lab.py": stage_module("lab", order=65)},
        r"site checks {dir}/lab.py: stage 'lab' has order 65; site stages run after the built-in ones "
        r"\(order 70 or more\)",
    ),
    "requires an unknown check": (
        {"lab.py": stage_module("lab", requires="('cpu.no-such-check',)")},
        r"site checks {dir}/lab.py: stage 'lab' requires 'cpu.no-such-check', which is no check "
        r"\(see python -m kvmqa checks\)",
    ),
    "requires a check that runs later": (
        {
            "lab.py": stage_module(
                "lab",
                checks="@CHECKS.check('lab.second', 'x')\ndef second(f, p):\n    return passed('')\n",
                requires="('lab.second',)",
            )
        },
        r"site checks {dir}/lab.py: stage 'lab' requires 'lab.second', which does not run before it "
        r"\(require "
        r""
        r"checks of "
        r"earlier stages, or checks declared above it in its stage\)",
    ),
    "a probe section without the prefix": (
        {"lab.py": stage_module("lab", probe=repr("_kq_sec chrony cat /etc/chrony.conf"))},
        r"site checks {dir}/lab.py: stage 'lab': probe section 'chrony' must be named "
        r"'lab.<key>' \(it lands in facts\['lab'\]\[<key>\]\)",
    ),
    "STAGE is no Stage": (
        {"lab.py": "STAGE = 'lab'\n"},
        r"site checks {dir}/lab.py: STAGE is a str, not a kvmqa.api.Stage",
    ),
    "no STAGE at all": (
        {"helpers.py": "X = 1\n"},
        r"site checks {dir}: no \*.py file or package there defines STAGE \(a kvmqa.api.Stage\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_site_folder_is_one_line(tmp_path: Path, case: str) -> None:
    files, pattern = BAD[case]
    folder = tmp_path / "site"
    if files is not None:
        site_folder(folder, files)
    line = re.compile(pattern.format(dir=re.escape(str(folder))) + "$")

    run = run_suite(tmp_path / "r", "--site-checks", str(folder), paths=SITE_PATHS, timeout=300)
    lines = [x for x in run.stdout.splitlines() if x.strip()]
    assert run.rc == 4 and len(lines) == 1 and "Traceback" not in run.stdout, run.stdout
    assert lines[0].startswith("ERROR: ") and line.match(lines[0][len("ERROR: ") :]), lines[0]
    assert run.results["errors"] == [lines[0][len("ERROR: ") :]] and run.results["results"] == []

    cli = subprocess.run(
        [sys.executable, "-m", "kvmqa", "checks", "--site-checks", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and cli.stdout == "" and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("kvmqa: ") and line.match(cli.stderr[len("kvmqa: ") :].rstrip("\n")), (
        cli.stderr
    )


def test_the_same_stage_in_two_folders_names_both(tmp_path: Path) -> None:
    a = site_folder(tmp_path / "a", {"lab.py": stage_module("lab")})
    b = site_folder(tmp_path / "b", {"lab.py": stage_module("lab")})
    with pytest.raises(StageError) as err:
        load_site_stages([a, b])
    assert str(err.value) == f"site checks {b}/lab.py: stage 'lab' is declared twice (also in {a}/lab.py)"


# -- (d) python -m kvmqa checks
# --------------------------------------------------------------------------------------
def test_checks_command_lists_site_checks() -> None:
    def checks(*args: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-m", "kvmqa", "checks", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return out.stdout.splitlines()

    plain = checks()
    with_site = checks("--site-checks", str(EXAMPLE))
    assert not any(line.startswith("acme.") for line in plain)
    assert with_site[: len(plain)] == plain  # the built-in ones first, unchanged
    assert [line.split()[:2] for line in with_site[len(plain) :]] == [
        ["acme.hugepages-1g", "fail"],
        ["acme.ntp-servers", "warn"],
        ["acme.kvm-device-mode", "fail"],
    ]
    hints = checks("--site-checks", str(EXAMPLE), "--hints")
    at = hints.index(next(line for line in hints if line.startswith("acme.hugepages-1g")))
    assert (
        hints[at + 1].strip()
        == "hint: boot with default_hugepagesz=1G hugepagesz=1G hugepages=N (profile acme: hugepages_1g)"
    )


# -- (e) unit level: the loader and the example's checks over facts
# -------------------------------------------------
def test_load_example_folder() -> None:
    (stage,) = load_site_stages([EXAMPLE])
    assert (stage.name, stage.order, stage.site, stage.checks.ids()) == ("acme", 70, True, list(ACME))
    assert stage.checks.get("acme.kvm-device-mode").requires == ("cpu.kvm-device",)
    registry = builtin().with_stages([stage])
    assert registry.names()[-1] == "acme" and registry.columns() == [*builtin().columns(), "acme"]
    assert registry.find_check("acme.ntp-servers").level.value == "warn"
    assert load_site_stages([EXAMPLE, EXAMPLE]) == [
        stage
    ]  # the same folder twice (option and ini) loads once


def test_load_packages_helpers_and_order(tmp_path: Path) -> None:
    folder = site_folder(
        tmp_path / "site",
        {
            "zlab/__init__.py": "from kvmqa.api import Stage\nfrom .checks import CHECKS\n"
            "STAGE = Stage(name='zlab', order=70, title='z', checks=CHECKS)\n",
            "zlab/checks.py": "from kvmqa.api import StageChecks, passed\nCHECKS = StageChecks('zlab')\n"
            "@CHECKS.check('zlab.one', 'one')\ndef one(f, p):\n    return passed('')\n",
            "alab.py": stage_module("alab", order=75),
            "_private.py": "raise RuntimeError('never imported')\n",
            "notes.txt": "not python\n",
            "helpers.py": "X = 1\n",  # no STAGE: a helper, ignored
        },
    )
    other = site_folder(
        tmp_path / "other", {"blab.py": stage_module("blab", order=70, requires="('zlab.one',)")}
    )
    stages = load_site_stages([folder, other])
    assert [s.name for s in stages] == ["alab", "zlab", "blab"]  # folder by folder, files in name order
    assert [s.name for s in builtin().with_stages(stages)][-3:] == [
        "zlab",
        "blab",
        "alab",
    ]  # run order: by order


def test_a_requires_of_an_earlier_site_stage_is_fine_a_later_one_is_not(tmp_path: Path) -> None:
    ok = site_folder(
        tmp_path / "ok",
        {
            "a.py": stage_module("a1", order=70),
            "b.py": stage_module("b1", order=71, requires="('a1.first',)"),
        },
    )
    assert [s.name for s in load_site_stages([ok])] == ["a1", "b1"]
    bad = site_folder(
        tmp_path / "bad",
        {
            "a.py": stage_module("a2", order=71, requires="('b2.first',)"),
            "b.py": stage_module("b2", order=72),
        },
    )
    with pytest.raises(StageError, match=r"stage 'a2' requires 'b2.first', which does not run before it"):
        load_site_stages([bad])


def acme_facts(**sections: str) -> dict[str, str]:
    (stage,) = load_site_stages([EXAMPLE])
    profile = profile_from_dict(
        {"acme": {"hugepages_1g": 4, "ntp_servers": ["ntp1.acme.lab"]}},
        "<test>",
        [*builtin().columns(), "acme"],
    )
    facts = recorded_facts("lab-bookworm-tcg", **sections)
    return {f.check_id: f.verdict.value for f in evaluate_stage(stage, "hv1", facts, profile)}


def test_acme_checks_pass_and_fail_over_recorded_facts() -> None:
    ntp = {"acme.ntp": "chrony 2.debian.pool.ntp.org\ntimesyncd ntp1.acme.lab"}
    good = (
        "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages=4\n"
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages=0"
    )
    assert acme_facts(hugepages=good, **ntp) == {
        "acme.hugepages-1g": "pass",
        "acme.ntp-servers": "pass",
        "acme.kvm-device-mode": "pass",
    }
    few = good.replace("=4", "=2")
    devices = "/dev/kvm|character special file|666|root|kvm"
    assert acme_facts(hugepages=few, devices=devices, **{"acme.ntp": "chrony 2.debian.pool.ntp.org"}) == {
        "acme.hugepages-1g": "fail",
        "acme.ntp-servers": "warn",
        "acme.kvm-device-mode": "fail",
    }
    no_pool = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages=512"
    assert (
        acme_facts(hugepages=no_pool, devices="/dev/kvm|missing", **{"acme.ntp": ""})["acme.hugepages-1g"]
        == "fail"
    )
    assert acme_facts(**ntp)["acme.ntp-servers"] == "pass"
    assert acme_facts()["acme.ntp-servers"] == "warn"  # a probe without acme's section (an older probe.txt)


def test_site_sections_land_in_the_stages_facts() -> None:
    facts = parse("@@kvmqa:acme.ntp rc=0\nchrony ntp1.acme.lab\n@@kvmqa:acme.other rc=3\n\n")
    assert facts["acme"] == {"ntp": {"rc": 0, "out": "chrony ntp1.acme.lab"}, "other": {"rc": 3, "out": ""}}


# -- a lab's plugin or conftest declares its stages (pytest_kvmqa_site_stages)
# ------------------------------------
LAB_PLUGIN = """
from pathlib import Path

from kvmqa.api import Stage, StageChecks, failed, passed

CHECKS = StageChecks("labx")


@CHECKS.check("labx.marker", "The lab's marker file exists", hint="touch the marker")
def marker(facts, profile):
    path = Path(MARKER)
    return passed(f"{path} exists") if path.exists() else failed(f"{path} is missing")


def pytest_kvmqa_site_stages(config):
    return [Stage(name="labx", order=75, title="lab x", checks=CHECKS, requires=("reach.probe",))]
"""


def test_a_plugin_declares_site_stages_through_the_hook(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    (tmp_path / "labx_plugin.py").write_text(f"MARKER = {str(marker)!r}\n" + LAB_PLUGIN)
    env = {"PYTHONPATH": str(tmp_path)}
    missing = run_suite(tmp_path / "r1", "-p", "labx_plugin", paths=SITE_PATHS, env=env)
    assert missing.rc == 1, missing.stdout[-2000:]
    assert missing.verdict("local", "labx.marker") == "fail"
    assert missing.results["matrix"]["local"]["labx"] == "fail"
    marker.write_text("")
    present = run_suite(tmp_path / "r2", "-p", "labx_plugin", paths=SITE_PATHS, env=env)
    assert present.rc == 0 and present.verdict("local", "labx.marker") == "pass"


def test_a_plugin_returning_a_bad_stage_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad_plugin.py").write_text(
        "def pytest_kvmqa_site_stages(config):\n    return ['not a stage']\n"
    )
    run = run_suite(tmp_path / "r", "-p", "bad_plugin", paths=SITE_PATHS, env={"PYTHONPATH": str(tmp_path)})
    assert run.rc == 4 and "Traceback" not in run.stdout
    line = next(ln for ln in run.stdout.splitlines() if "site checks" in ln)
    assert "bad_plugin.py: pytest_kvmqa_site_stages returned a str, not a kvmqa.api.Stage" in line
    assert run.results["errors"] == [line.removeprefix("ERROR: ")]
