"""What a boot's observation means, in one sentence: pure, shared by the watcher and the checks.

A guest kvmqa destroyed (deadline, silence, reset, Ctrl-C) is never described as having stopped by itself;
a slow boot whose console still advanced at the deadline is "still booting", not dead; a reset names the
kernel time it reached.
"""

from __future__ import annotations

from typing import Any


def _secs(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, (int, float)) else "?"


def describe(boot: dict[str, Any]) -> str:
    """One sentence for what happened to a guest that did not finish, from a BootResult dict.

    Pure (also used by the checks on recorded observations). It never says a guest stopped by itself when
    kvmqa destroyed it, and it tells a slow boot (console still advancing) from a dead or resetting one.
    """
    outcome = boot.get("outcome")
    t = boot.get("timings") or {}
    kernel = boot.get("kernel_s")
    at = f"kernel at {_secs(kernel)}" if kernel is not None else "no kernel timestamp on the console"
    by_kvmqa = boot.get("stopped_by") == "kvmqa"
    after = (
        f"; kvmqa destroyed it ({boot.get('stop_reason')})" if by_kvmqa and boot.get("stop_reason") else ""
    )
    deadline = t.get("deadline_s")
    if outcome == "done":
        return "guest ran its checks and powered off"
    if outcome == "still-booting":
        return (
            f"still booting at the {_secs(deadline)} deadline (console advancing, {at}, last console output "
            f"{_secs(float(deadline or 0) - float(t.get('last_byte_s') or 0))} before the deadline){after}"
        )
    if outcome == "timeout":
        quiet = (
            f"console silent since {_secs(t['last_byte_s'])} after start"
            if "last_byte_s" in t
            else "no console output at all"
        )
        return (
            f"no power-off within the {_secs(deadline)} deadline and the console stopped advancing ({quiet}, "
            f"{at}){after}"
        )
    if outcome == "reset":
        reached = boot.get("reset_at_kernel_s")
        how = (
            "the kernel printed 'reboot: Restarting system'"
            if boot.get("restart_requested")
            else f"the console shows {boot.get('boots', 2)} kernel boots"
        )
        return f"guest reset at kernel time {_secs(reached) if reached is not None else '?'} ({how}){after}"
    if outcome == "panic":
        return f"{boot.get('panic') or 'Kernel panic'} ({at}){after}"
    if outcome == "no-output" and "silent_s" in t:
        return f"no console output within {_secs(t['silent_s'])} of start (state {boot.get('state')}){after}"
    if outcome == "destroyed":
        return (
            f"guest was destroyed from outside this boot ({boot.get('state')}, {at}): not by its own "
            "power-off "
            f"and not by this boot's watcher (virsh destroy, libvirtd, or another run's --cleanup)"
        )
    if outcome == "stopped":
        return f"guest powered off by itself without the KVMQA-DONE marker ({boot.get('state')}, {at})"
    if outcome in ("crashed", "paused"):
        return f"guest {boot.get('state')} ({at}){after}"
    if outcome == "interrupted":
        return f"interrupted (Ctrl-C) while the guest ran ({at}); kvmqa destroyed it"
    return str(boot.get("error") or outcome)
