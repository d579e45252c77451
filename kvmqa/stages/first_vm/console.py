"""Read a guest's serial console through libvirt (``dom.openConsole`` stream), local or remote alike.

The domain is started paused, the console is opened, then the guest is resumed, so not a byte of the
boot is lost. A background thread does blocking ``recv`` calls on a *dedicated* connection: libvirt's
remote driver holds the connection lock during a blocking stream recv, so sharing the caller's
connection would block every other call (QMP, state polls) until the guest prints — a deadlock while
the guest is paused. The owner waits on a condition that is notified on every chunk. Marker lines
``KVMQA-<WORD> [status] key=value…`` are parsed from the text.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import libvirt

MARKER = re.compile(r"KVMQA-([A-Z]+)([^\r\n]*)")
KERNEL_TIME = re.compile(r"^\[\s*(\d+\.\d+)\]", re.M)
UPTIME = re.compile(r"KVMQA-[A-Z]+[^\r\n]* up=(\d+\.\d+)")  # /init's markers carry the guest's uptime
BANNER = (
    "Linux version "  # the first line a booting kernel prints (replayed when the serial console registers)
)
RESTART = "reboot: Restarting system"  # the kernel's own last line before a reset it asked for


def parse_markers(text: str) -> dict[str, dict[str, str]]:
    """``KVMQA-DISK ok token=ab`` -> ``{"DISK": {"status": "ok", "token": "ab"}}`` (last one wins)."""
    markers: dict[str, dict[str, str]] = {}
    for match in MARKER.finditer(text):
        fields: dict[str, str] = {}
        for i, word in enumerate(match.group(2).split()):
            key, sep, value = word.partition("=")
            if sep:
                fields[key] = value
            elif i == 0:
                fields["status"] = word
        markers[match.group(1)] = fields
    return markers


@dataclass(frozen=True)
class ConsoleReading:
    """What the console text alone says about a boot: how far the kernel got, and whether it reset."""

    kernel_s: float | None  # the last kernel timestamp printed, ``[   28.104] ...`` -> 28.104
    # boots seen (kernel banners, or /init's KVMQA-BOOT lines): 2 or more means it reset and booted again
    boots: int
    restart_requested: bool  # the kernel printed "reboot: Restarting system"
    reset_at_kernel_s: float | None  # the kernel time reached before the (first) reset
    last_line: str
    reset_pos: int | None = (
        None  # where in the (\r-free) text the first reset shows: the second boot or the restart
    )

    @property
    def reset(self) -> bool:
        return self.boots > 1 or self.restart_requested


def read_console(text: str) -> ConsoleReading:
    """Kernel time reached, boots and reset signs in a serial console's text.

    A boot is a kernel banner or, with a quiet kernel (``quiet``/``loglevel``: no banner), a KVMQA-BOOT line
    from /init; times are the kernel's ``[seconds]`` stamps and the markers' ``up=`` (uptime) fields.
    """
    text = text.replace("\r", "")
    starts = _boot_starts(text)
    restart = text.find(RESTART)
    cut = min([p for p in (starts[1] if len(starts) > 1 else -1, restart) if p >= 0], default=-1)
    before = _times(text, cut) if cut >= 0 else []
    times = _times(text, len(text))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ConsoleReading(
        kernel_s=times[-1] if times else None,
        boots=len(starts),
        restart_requested=restart >= 0,
        reset_at_kernel_s=max(before) if before else None,
        last_line=lines[-1][:160] if lines else "",
        reset_pos=None
        if cut < 0
        else _line_end(text, cut)
        if cut == restart
        else text.rfind("\n", 0, cut) + 1,
    )


def _line_end(text: str, pos: int) -> int:
    """The end of the line holding `pos` (a restart line stays in the tail before the reset)."""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end + 1


def _boot_starts(text: str) -> list[int]:
    """Where each boot begins: at a kernel banner, or at a KVMQA-BOOT line with no banner since the last one.

    Kernel output before the first banner (a tail that begins inside an earlier boot) is a boot of its own.
    """
    events = sorted(
        [(m.start(), "banner") for m in re.finditer(re.escape(BANNER), text)]
        + [(m.start(), "init") for m in re.finditer(r"KVMQA-BOOT ", text)]
    )
    starts: list[int] = []
    init_seen = True  # a text that opens with /init's line (a quiet kernel) opens a boot there
    for pos, kind in events:
        if (
            not starts
            and kind == "banner"
            and any(float(m.group(1)) > 0 for m in KERNEL_TIME.finditer(text, 0, pos))
        ):
            starts.append(0)
        if kind == "banner" or init_seen:
            starts.append(pos)
        init_seen = kind == "init"
    return starts


def _times(text: str, end: int) -> list[float]:
    """Kernel stamps and marker uptimes in text[:end], in the order printed."""
    found = [(m.start(), float(m.group(1))) for m in KERNEL_TIME.finditer(text, 0, end)]
    found += [(m.start(), float(m.group(1))) for m in UPTIME.finditer(text, 0, end)]
    return [t for _, t in sorted(found)]


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


@dataclass
class ConsoleTap:
    """Everything the guest wrote to its serial console since `open`, with the time of the first byte."""

    uri: str
    dom_uuid: bytes
    data: bytearray = field(default_factory=bytearray)
    first_byte_at: float | None = None
    last_byte_at: float | None = None
    closed: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._conn = libvirt.open(self.uri)
        try:
            dom = self._conn.lookupByUUID(self.dom_uuid)
            self._stream = self._conn.newStream(0)
            dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        except BaseException:
            self._conn.close()
            raise
        self._thread = threading.Thread(target=self._pump, name=f"console-{dom.name()}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while True:
                chunk = self._stream.recv(4096)
                if not isinstance(chunk, bytes) or not chunk:
                    break
                with self._cond:
                    self.last_byte_at = time.monotonic()
                    if self.first_byte_at is None:
                        self.first_byte_at = self.last_byte_at
                    self.data += chunk
                    self._cond.notify_all()
        except libvirt.libvirtError as exc:
            self.error = str(exc)
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self.data.decode(errors="replace")

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when console output arrives."""
        with self._cond:
            if not self.closed:
                self._cond.wait(seconds)
                return
        time.sleep(seconds)  # the stream has ended: still pace the caller's polling

    def wait_for(self, needle: str, deadline: float) -> bool:
        while needle not in self.text:
            if self.closed or time.monotonic() >= deadline:
                return needle in self.text
            self.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return True

    def close(self, grace: float = 2.0) -> None:
        """Wait for the stream's end (the guest is gone), then abort it if it is still open."""
        self._thread.join(timeout=grace)
        if self._thread.is_alive():
            try:
                self._stream.abort()
            except libvirt.libvirtError:
                pass
            self._thread.join(timeout=1)
        if not self._thread.is_alive():
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
