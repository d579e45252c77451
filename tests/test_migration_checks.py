"""The migration stage's pure parts over recorded text: the heartbeat on the consoles, libvirt's job figures,
the link from a libvirt failure to the cluster check that predicted it, and the checks' verdicts and the
host x host matrix over recorded facts (no lab: default CI).

tests/recorded/migration/heartbeat-tcg-console.log is the kit guest's real serial log (kvmqa.heartbeat=0.5,
kvmqa.diskevery=4, TCG on this machine, 2026-12-08). A move is represented by cutting that log in two at a
beat, mid-line, the way a switch-over cuts the console between the source's log and the destination's:
a stand-in for the two hosts' logs (the lab tests read the real ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Finding
from kvmqa.report.results import RunResults, pairs_text
from kvmqa.stages.migration.checks import CHECKS
from kvmqa.stages.migration.facts import (
    disk_token,
    figures,
    hop_heartbeat,
    link_failure,
    parse_beats,
    parse_domjobinfo,
    plan_pairs,
    predicted_by,
    relevant_checks,
)

CONSOLE = (Path(__file__).parent / "recorded" / "migration" / "heartbeat-tcg-console.log").read_text()
BOOT_ID = "95065286-9d4c-4bd2-b7e3-2e102e4a3b26"
# `virsh domjobinfo --completed` on the destination, as libvirt 9.0 (bookworm) prints it
DOMJOBINFO = """Job type:         Completed
Operation:        Incoming migration
Time elapsed:     12779        ms
Time elapsed w/o network: 12771        ms
Data processed:   109.374 MiB
Data remaining:   0.000 B
Data total:       128.133 MiB
Memory processed: 109.374 MiB
Memory remaining: 0.000 B
Memory total:     128.133 MiB
Memory bandwidth: 8.723 MiB/s
Dirty rate:       0            pages/s
Page size:        4096         bytes
Iteration:        3
Constant pages:   4882
Normal pages:     27842
Normal data:      108.758 MiB
Total downtime:   226          ms
Downtime w/o network: 219          ms
Setup time:       24           ms
"""
REACH = "lab1 → lab2: QEMU migration port 49152 filtered (no answer)"


def cut(text: str, at_beat: int, into_line: int = 20) -> tuple[str, str]:
    """The console split as a switch-over splits it: the source's log ends `into_line` characters into
    beat `at_beat`'s line, the destination's starts with the rest of that line."""
    start = text.index(f"KVMQA-HB n={at_beat} ")
    return text[: start + into_line], text[start + into_line :]


def test_the_recorded_heartbeat_beats_with_one_boot_id_and_writes_its_disk_token() -> None:
    beats = parse_beats(CONSOLE)
    assert [b.n for b in beats] == list(range(1, 67))
    assert {b.boot for b in beats} == {BOOT_ID}
    assert [b.n for b in beats if b.disk.startswith("ok:")] == list(range(1, 67, 4))
    assert disk_token(b"KVMQA-HB:" + BOOT_ID.encode() + b":65\n" + b"\0" * 400) == (BOOT_ID, 65)
    assert disk_token(b"\0" * 512) is None


def test_a_move_that_cuts_a_line_keeps_the_heartbeat_one_beat_is_lost() -> None:
    before, after = cut(CONSOLE, 30)
    hb = hop_heartbeat(before, after, 0.5)
    assert hb["ok"] and hb["problems"] == []
    assert (hb["last_on_source"], hb["first_on_destination"], hb["lost"]) == (29, 31, 1)
    assert hb["boot_ids"] == [BOOT_ID] and hb["disk_after"] == "ok:33"
    assert 0.5 < hb["max_gap_s"] < 2.0  # the guest's own clock between two beats (TCG here)


def test_a_guest_that_restarted_on_the_destination_is_no_live_move() -> None:
    before, _ = cut(CONSOLE, 30)
    again = CONSOLE.replace(BOOT_ID, "11111111-2222-3333-4444-555555555555")
    hb = hop_heartbeat(before, again, 0.5)
    assert not hb["ok"]
    assert "the guest's /init started again on the destination" in hb["problems"]
    assert (
        any("2 boot ids" in p for p in hb["problems"]) and "the heartbeat counter went back" in hb["problems"]
    )
    assert hop_heartbeat(before, "", 0.5)["problems"] == [
        "no heartbeat on the destination's console after the move"
    ]


def test_libvirts_completed_job_figures_from_the_api_and_from_virsh_agree() -> None:
    plain = parse_domjobinfo(DOMJOBINFO)
    assert plain["time_elapsed"] == 12779 and plain["downtime"] == 226 and plain["setup_time"] == 24
    assert plain["data_processed"] == round(109.374 * 2**20) and plain["memory_dirty_rate"] == 0
    api = {
        "time_elapsed": 12779,
        "downtime": 226,
        "setup_time": 24,
        "data_processed": 114687000,
        "memory_dirty_rate": 0,
        "memory_iteration": 3,
        "type": 3,
    }
    f = figures(api)
    assert (f["total_ms"], f["downtime_ms"], f["setup_ms"], f["dirty_rate_pages_s"]) == (12779, 226, 24, 0)
    assert figures({"time_elapsed": 5})["downtime_ms"] is None


@pytest.mark.parametrize(
    ("message", "check"),
    [
        ("unable to connect to server at 'lab2:49152': Connection timed out", "cluster.reach"),
        (
            "operation failed: guest CPU doesn't match specification: missing features: avx512f",
            "cluster.cpu-pairwise",
        ),
        (
            "unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type "
            "'pc-q35-10.0'",
            "cluster.machine-types",
        ),
        (
            "operation failed: Failed to connect to remote libvirt URI qemu+ssh://root@lab2/system: "
            "Cannot recv data: Host key verification failed.: Connection reset by peer",
            "cluster.trust",
        ),
        ("Storage pool not found: no storage pool with matching name 'kvmqa-shared'", "cluster.storage"),
        (  # the lab, 2026-12-08: lab2's netfs pool not refreshed after lab1 created the disk on it
            "Storage volume not found: no storage vol with matching name 'kvmqa-mig-21ab4c-shared-1-disk'",
            "cluster.storage",
        ),
        ("internal error: qemu unexpectedly closed the monitor", ""),
    ],
)
def test_a_libvirt_failure_names_the_cluster_check_that_looks_at_it(message: str, check: str) -> None:
    assert link_failure(message) == check


def test_a_failure_is_predicted_only_by_a_check_that_refused_its_pair() -> None:
    reach = {"check": "cluster.reach", "reason": REACH}
    timed_out = "unable to connect to server at 'lab2:49152': Connection timed out"
    assert predicted_by(timed_out, [reach]) == {
        "check": "cluster.reach",
        "reason": REACH,
        "linked": "cluster.reach",
    }
    assert predicted_by(timed_out, []) == {"check": "", "reason": "", "linked": "cluster.reach"}  # a gap
    assert predicted_by("qemu unexpectedly closed the monitor", [reach])["check"] == "cluster.reach"
    assert predicted_by("qemu unexpectedly closed the monitor", [])["check"] == ""
    cpu = {"check": "cluster.cpu-pairwise", "reason": "lab1's host-model CPU (EPYC) lacks on lab2: avx"}
    machine = {"check": "cluster.machine-types", "reason": "pc-q35-10.0 is missing on lab1"}
    pool = {"check": "cluster.storage", "reason": "pool kvmqa-shared is missing on lab2"}
    assert relevant_checks([cpu, machine, pool, reach], "", "", "copy") == [machine, reach]
    assert relevant_checks([cpu, machine, pool], "host-model", "pc-i440fx-7.2", "shared") == [cpu, pool]


def test_pairs_a_ring_by_default_every_ordered_pair_on_request() -> None:
    assert plan_pairs(["a", "b"]) == [("a", "b"), ("b", "a")]
    assert plan_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c"), ("c", "a")]
    every = plan_pairs(["a", "b", "c"], "all")
    assert sorted(every) == sorted((x, y) for x in "abc" for y in "abc" if x != y) and len(every) == 6
    assert plan_pairs(["a"]) == []


def hop(source: str, destination: str, **more: Any) -> dict[str, Any]:
    before, after = cut(CONSOLE, 30)
    base: dict[str, Any] = {
        "storage": "shared",
        "source": source,
        "destination": destination,
        "guest": "kvmqa-mig-abc123-shared-1",
        "refusals": [],
        "ok": True,
        "seconds": 14.2,
        "figures": figures(parse_domjobinfo(DOMJOBINFO)),
        "heartbeat": hop_heartbeat(before, after, 0.5),
    }
    return {**base, **more}


def facts(*hops: dict[str, Any], **more: Any) -> HostFacts:
    data = {
        "hosts": ["lab1", "lab2"],
        "storage": ["shared"],
        "hops": list(hops),
        "guests": [],
        "removed": {"lab1": ["pool kvmqa-mig-abc123"], "lab2": ["pool kvmqa-mig-abc123"]},
        "leftovers": {"lab1": [], "lab2": []},
        **more,
    }
    return HostFacts(migration=data)


def verdicts(f: HostFacts, profile: Profile | None = None) -> dict[str, Finding]:
    return {c.id: c.evaluate("cluster", f, profile or Profile()) for c in CHECKS}


def test_two_moves_that_kept_the_guest_running_pass_every_check() -> None:
    found = verdicts(facts(hop("lab1", "lab2"), hop("lab2", "lab1")))
    assert {k: f.verdict.value for k, f in found.items()} == dict.fromkeys(found, "pass")
    assert "lab1 → lab2 (shared) in 14.2 s, downtime 226 ms" in found["migration.live"].message
    assert "total 12.8 s, downtime 226 ms, setup 24 ms, 109.4 MiB, dirty rate 0 pages/s" in (
        found["migration.downtime"].message
    )


def test_a_downtime_past_the_profiles_limit_fails() -> None:
    strict = Profile(stages={"migration": {"max_downtime_ms": 200, "max_total_s": 10}})
    found = verdicts(facts(hop("lab1", "lab2")), strict)["migration.downtime"]
    assert found.verdict.value == "fail"
    assert found.message.startswith(
        "lab1 → lab2 (shared): downtime 226 ms > 200 ms; lab1 → lab2 (shared): total"
    )


def test_a_failed_move_is_one_line_tied_to_its_prediction_and_the_guest_is_still_on_the_source() -> None:
    reach = [{"check": "cluster.reach", "reason": REACH, "verdict": "fail"}]
    error = "unable to connect to server at 'lab2:49152': Connection timed out"
    failed = hop(
        "lab1",
        "lab2",
        ok=False,
        error=error,
        refusals=reach,
        still_on_source=True,
        source_state="running",
        prediction=predicted_by(error, reach),
        figures={},
        heartbeat=None,
    )
    found = verdicts(facts(failed, hop("lab2", "lab1")))
    assert found["migration.live"].verdict.value == "fail"
    assert found["migration.live"].message == (
        f"lab1 → lab2 (shared) failed: {error}; predicted by cluster.reach ({REACH}); "
        "the guest is still running on lab1"
    )
    assert found["migration.predicted"].verdict.value == "pass"
    unforeseen = {**failed, "refusals": [], "prediction": predicted_by(error, [])}
    gap = verdicts(facts(unforeseen))["migration.predicted"]
    assert gap.verdict.value == "fail" and "NOT predicted: cluster.reach passed this pair" in gap.message
    alarm = verdicts(facts(hop("lab1", "lab2", refusals=reach)))["migration.predicted"]
    assert alarm.verdict.value == "warn" and "moved although cluster.reach refused it" in alarm.message


def test_leftovers_on_a_host_fail_the_cleanup_and_one_host_is_not_applicable() -> None:
    left = facts(hop("lab1", "lab2"), leftovers={"lab1": [], "lab2": ["domain kvmqa-mig-abc123-shared-1"]})
    found = verdicts(left)["migration.cleanup"]
    assert found.verdict.value == "fail" and found.message == "left on lab2: domain kvmqa-mig-abc123-shared-1"
    one = verdicts(HostFacts(migration={"hosts": ["lab1"]}))
    assert {f.verdict.value for f in one.values()} == {"skip"}


def test_the_matrix_shows_each_move_beside_the_prediction() -> None:
    reach = [{"check": "cluster.reach", "reason": REACH, "verdict": "fail"}]
    error = "unable to connect to server at 'lab2:49152': Connection timed out"
    failed = hop("lab1", "lab2", ok=False, error=error, refusals=reach, figures={}, heartbeat=None)
    live = verdicts(facts(failed, hop("lab2", "lab1")))["migration.live"]
    predicted = Finding.from_json(
        {
            "host": "cluster",
            "check_id": "cluster.reach",
            "stage": "cluster",
            "title": "",
            "level": "fail",
            "verdict": "fail",
            "message": REACH,
            "hint": "",
            "details": {
                "hosts": ["lab1", "lab2"],
                "pairs": [{"source": "lab1", "destination": "lab2", "reason": REACH}],
            },
        }
    )
    matrix = RunResults(findings=[predicted, live]).pair_matrices()["cluster"]
    cell = matrix["cells"]["lab1"]["lab2"]
    assert not cell["ok"] and cell["check"] == "cluster.reach" and cell["migration"][0]["ok"] is False
    assert matrix["cells"]["lab2"]["lab1"]["migration"][0]["downtime_ms"] == 226
    text = pairs_text(matrix)
    assert f"lab1 → lab2 (shared): refused by cluster.reach → FAILED: {error}" in text
    assert "lab2 → lab1 (shared): predicted able → moved in 12.8 s, downtime 226 ms" in text


def test_a_baseline_shows_a_pair_that_stopped_moving_and_a_downtime_past_the_tolerance() -> None:
    from kvmqa.policy.baseline import compare_host, comparison_lines

    def snap(*hops: dict[str, Any]) -> dict[str, Any]:
        return {"facts": {"migration": {"hops": list(hops)}}, "verdicts": {}}

    before = snap(hop("lab1", "lab2"), hop("lab2", "lab1"))
    slower = hop("lab2", "lab1", figures={**figures(parse_domjobinfo(DOMJOBINFO)), "downtime_ms": 400})
    after = snap(hop("lab1", "lab2", ok=False, error="machine type"), slower)
    found = compare_host(before, after, tolerance_pct=50)
    assert found["regressions"] == [
        {"check_id": "migration.live", "pair": "lab1 → lab2 (shared)", "before": "moved", "after": "failed"},
        {
            "check_id": "migration.downtime",
            "pair": "lab2 → lab1 (shared)",
            "before": "226 ms",
            "after": "400 ms (over +50 %)",
        },
    ]
    assert compare_host(before, after, tolerance_pct=100)["regressions"][1:] == []
    line = comparison_lines({"hosts": {"cluster": {"status": "compared", **found}}})[0]
    assert "REGRESSIONS: migration.live lab1 → lab2 (shared) moved -> failed" in line


def test_the_html_picture_colours_a_move_that_failed_where_the_cluster_saw_no_reason() -> None:
    from kvmqa.report.html import pairs_html

    error = "internal error: qemu unexpectedly closed the monitor"
    failed = hop("lab1", "lab2", ok=False, error=error, figures={}, heartbeat=None)
    live = verdicts(facts(failed, hop("lab2", "lab1")))["migration.live"]
    matrix = RunResults(findings=[live]).pair_matrices()["cluster"]
    html = pairs_html("cluster", matrix)
    assert 'data-source="lab1" data-destination="lab2"' in html and "shared: migration FAILED" in html
    assert "kvmqa-pair-fail" in html and "shared: moved, downtime 226 ms" in html
    assert "not judged" in pairs_text(matrix)  # no cluster finding in these results: no prediction shown


LAB_CASE1 = (
    Path(__file__).parent / "recorded" / "migration" / "lab-case1"
)  # tests/test_lab_migration.py case 1


def test_the_recorded_lab_run_two_identical_hosts_both_storage_modes_passes_every_check() -> None:
    """Facts and consoles of a real lab run (2026-12-08: lab1 → lab2 → lab1, shared pool, then copy)."""
    import json

    recorded = HostFacts(json.loads((LAB_CASE1 / "facts.json").read_text()))
    found = verdicts(recorded, Profile(stages={"migration": {"max_downtime_ms": 3000, "max_total_s": 120}}))
    assert {k: f.verdict.value for k, f in found.items()} == dict.fromkeys(found, "pass"), found
    assert found["migration.downtime"].message.startswith(
        "lab1 → lab2 (shared): total 11.7 s, downtime 412 ms"
    )
    strict = verdicts(recorded, Profile())["migration.downtime"]  # real hosts' defaults: 1000 ms, 60 s
    assert strict.verdict.value == "pass"
    tighter = verdicts(recorded, Profile(stages={"migration": {"max_downtime_ms": 500}}))[
        "migration.downtime"
    ]
    assert (
        tighter.verdict.value == "fail"
        and "lab2 → lab1 (shared): downtime 621 ms > 500 ms" in tighter.message
    )
    for hop_record in recorded["migration"]["hops"]:  # the consoles kept beside the report say the same
        before, after = (Path(p).name for p in hop_record["consoles"])
        again = hop_heartbeat(
            (LAB_CASE1 / before).read_text(),
            (LAB_CASE1 / after).read_text(),
            hop_record["heartbeat"]["interval_s"],
        )
        assert {k: again[k] for k in ("ok", "lost", "boot_ids", "max_gap_s")} == {
            k: hop_record["heartbeat"][k] for k in ("ok", "lost", "boot_ids", "max_gap_s")
        }
        assert again["ok"] and again["lost"] == 0


def test_an_interrupted_run_scoped_test_is_placed_on_the_cluster_pseudo_host() -> None:
    from kvmqa.pytest_plugin.interrupt import place_of
    from kvmqa.stages import builtin

    nodeid = "suites/test_67_migration.py::test_migration[migration.live]"
    assert place_of(nodeid, ["lab1", "lab2"], builtin()) == {
        "test": nodeid,
        "host": "cluster",
        "check": "migration.live",
        "stage": "migration",
    }


def test_the_recorded_lab_failure_a_filtered_port_is_one_line_predicted_by_cluster_reach() -> None:
    """Facts of a real lab run (2026-12-08, case 4): lab2's firewall dropped lab1's TCP to 49152-49215."""
    import json

    recorded = HostFacts(json.loads((LAB_CASE1.parent / "lab-case4" / "facts.json").read_text()))
    found = verdicts(recorded, Profile(stages={"migration": {"max_downtime_ms": 3000, "max_total_s": 120}}))
    assert found["migration.live"].verdict.value == "fail"
    assert found["migration.live"].message == (
        "lab1 → lab2 (shared) failed: unable to connect to server at 'lab2:49152': Connection timed out; "
        "predicted by cluster.reach (lab1 → lab2: QEMU migration port 49152 filtered (no answer)); "
        "the guest is still running on lab1"
    )
    assert found["migration.predicted"].verdict.value == "pass"
    cells = {(c["source"], c["destination"]): c for c in found["migration.live"].details["migrations"]}
    assert cells["lab1", "lab2"]["predicted"] == "refused" and not cells["lab1", "lab2"]["ok"]
    assert cells["lab2", "lab1"]["predicted"] == "able" and cells["lab2", "lab1"]["ok"]
    assert {k: f.verdict.value for k, f in found.items() if k not in ("migration.live",)} == dict.fromkeys(
        [
            "migration.predicted",
            "migration.heartbeat",
            "migration.disk",
            "migration.downtime",
            "migration.cleanup",
        ],
        "pass",
    )


def test_the_pair_picture_of_the_recorded_filtered_port_as_a_person_sees_it(tmp_path: Path) -> None:
    """Both run-scoped stages over the real lab run of case 4, rendered by headless Chromium: lab1 → lab2 is
    red, refused by cluster.reach, its move failed; lab2 → lab1 is green and moved, with its downtime."""
    import json
    import re

    from kvmqa.core.gate import evaluate_stage
    from kvmqa.report.screenshot import png_size, rendered_dom, screenshot
    from kvmqa.report.standalone import write_standalone
    from kvmqa.stages import builtin

    recorded = HostFacts(json.loads((LAB_CASE1.parent / "lab-case4" / "facts.json").read_text()))
    profile = Profile(stages={"migration": {"max_downtime_ms": 3000, "max_total_s": 120}})
    findings = [
        f for stage in ("cluster", "migration")
        for f in evaluate_stage(builtin().get(stage).checks, "cluster", recorded, profile)
    ]  # fmt: skip
    report = write_standalone(RunResults(findings=findings), tmp_path / "report.html")
    dom = rendered_dom(report)
    table = re.search(r'<table class="pairs" id="kvmqa-pairs">.*?</table>', dom, re.S)
    assert table, "the pair matrix is not in the rendered DOM"
    cells = {
        (a, b): (verdict, colour, body)
        for verdict, a, b, colour, body in re.findall(
            r'<td class="cell kvmqa-pair-(\w+)" data-source="(\w+)" data-destination="(\w+)" '
            r'style="background:(#\w+)">(.*?)</td>',
            table.group(0),
            re.S,
        )
    }
    moves = {(m["source"], m["destination"]): m for m in recorded["migration"]["hops"]}
    assert cells["lab1", "lab2"][:2] == ("fail", "#c62828")
    assert (
        "cluster.reach" in cells["lab1", "lab2"][2] and "shared: migration FAILED" in cells["lab1", "lab2"][2]
    )
    assert cells["lab2", "lab1"][:2] == ("pass", "#2e7d32")
    downtime = moves["lab2", "lab1"]["figures"]["downtime_ms"]
    assert f"shared: moved, downtime {downtime} ms" in cells["lab2", "lab1"][2]
    assert png_size(screenshot(report)) == (1400, 1000)
