"""The host's kernel log around the first VM: mark its position before the boots, read what is new after.

    mark = kernel_log_mark(run)          # before the first boot
    ...                                  # boots
    seen = kernel_log_since(run, mark)   # {"source": "dmesg", "new": 12, "errors": [...]} or {"error": ...}

`dmesg -r` first (raw ``<N>[seconds] text`` lines; N & 7 is the level, 0 emerg .. 3 err), new lines being
those stamped after the mark; where dmesg cannot be read (``kernel.dmesg_restrict`` and no root), the
journal's kernel messages (``journalctl -k``) from a cursor. If neither can be read the result says why:
the check then reports that it could not look, never that the log was clean.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from kvmqa.stages.first_vm.runner import Runner

ERR = 3  # syslog level "err"; emerg(0), alert(1), crit(2) are worse
LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
RAW = re.compile(r"^<(\d+)>\[\s*(\d+\.\d+)\]\s?(.*)$")
JOURNAL_LIMIT = 200  # journal lines read at most (level err and worse only)
DMESG_LIMIT = 5000  # dmesg lines read at most (the newest)


def kernel_log_mark(run: Runner) -> dict[str, Any]:
    """Where the host's kernel log stands now: the last dmesg timestamp, or a journal cursor."""
    out = run(
        'if log=$(dmesg -r 2>&1); then echo ok; else echo fail; fi; printf "%s\\n" "$log" | tail -n 1', 20
    )
    status, _, last = out.stdout.strip().partition("\n")
    match = RAW.match(last.strip())
    if status == "ok":
        return {"source": "dmesg", "mark_s": float(match.group(2)) if match else 0.0}
    dmesg_error = (last.strip() or out.stderr.strip() or f"rc={out.rc}")[:200]
    journal = run("journalctl -k -n 0 --show-cursor -q --no-pager 2>&1", 20)
    cursor = re.search(r"^-- cursor: (\S+)", journal.stdout, re.M)
    if journal.rc == 0 and cursor:
        return {"source": "journal", "cursor": cursor.group(1), "dmesg_error": dmesg_error}
    why = (journal.stdout or journal.stderr).strip().splitlines()
    return {"error": f"dmesg: {dmesg_error}; journalctl -k: {why[-1][:200] if why else f'rc={journal.rc}'}"}


def kernel_log_since(run: Runner, mark: dict[str, Any]) -> dict[str, Any]:
    """New kernel messages since `mark`: how many, and those at level err or worse (as `<level> [s] text`)."""
    if mark.get("error"):
        return {"error": mark["error"]}
    if mark["source"] == "dmesg":
        out = run(f"dmesg -r | tail -n {DMESG_LIMIT}", 30)
        if out.rc != 0:
            return {"source": "dmesg", "error": f"dmesg failed after the boot: {out.stderr.strip()[:200]}"}
        return {"source": "dmesg", "mark_s": mark["mark_s"], **new_dmesg_lines(out.stdout, mark["mark_s"])}
    cmd = (
        f"journalctl -k -p 0..{ERR} --after-cursor={shlex.quote(mark['cursor'])} -o short-monotonic -q "
        f"--no-pager | tail -n {JOURNAL_LIMIT}"
    )
    out = run(cmd, 30)
    if out.rc != 0:
        return {
            "source": "journal",
            "error": f"journalctl -k failed after the boot: {out.stderr.strip()[:200]}",
        }
    errors = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return {"source": "journal", "dmesg_error": mark.get("dmesg_error"), "errors": errors, "new": None}


def new_dmesg_lines(text: str, mark_s: float) -> dict[str, Any]:
    """From ``dmesg -r`` output: the count of lines stamped after `mark_s`, and those at level err or
    worse."""
    new, errors = 0, []
    for line in text.splitlines():
        match = RAW.match(line)
        if not match or float(match.group(2)) <= mark_s:
            continue
        new += 1
        level = int(match.group(1)) & 7
        if level <= ERR:
            errors.append(f"<{LEVELS[level]}> [{float(match.group(2)):.3f}] {match.group(3).strip()}")
    return {"new": new, "errors": errors}
