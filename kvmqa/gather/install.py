"""facts['install']: the few things install preconditions need that the verify probe does not ask (one round
trip).

Only gathered in install and plan mode: the profile's extra packages, whether the package lists exist,
which libvirt daemons are alive (the probe's process list counts zombies), what kvmqa persisted in
/etc/modules-load.d, whether modprobe exists, and the --libvirt-user's groups.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from typing import TYPE_CHECKING, Any

from kvmqa.gather.distro import PACKAGE_MANAGER

if TYPE_CHECKING:
    from kvmqa.core.action import ActionContext
    from kvmqa.gather.context import HostContext

PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:~-]*$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,30}\$?$")
MODULES_LOAD = "/etc/modules-load.d/kvmqa.conf"
DAEMONS = ("libvirtd", "virtqemud", "virtnetworkd", "virtstoraged", "virtproxyd", "virtlogd")

SCRIPT = (
    resources.files(__package__)
    .joinpath("install-facts.sh")
    .read_text()
    .replace("__MODULES_LOAD__", MODULES_LOAD)
)


def extra_packages(facts: dict[str, Any], ctx: ActionContext) -> list[str]:
    family = (facts.get("os") or {}).get("family") or ""
    return list(ctx.extra_packages.get(family, []))


def install_script(facts: dict[str, Any], ctx: ActionContext) -> str:
    extra = [p for p in extra_packages(facts, ctx) if PACKAGE_NAME.match(p)]
    user = ctx.libvirt_user if ctx.libvirt_user and USER_NAME.match(ctx.libvirt_user) else ""
    manager = PACKAGE_MANAGER.get((facts.get("os") or {}).get("family") or "", "")
    return (
        f"KVMQA_MANAGER={shlex.quote(manager)}\n"
        f"KVMQA_EXTRA={shlex.quote(' '.join(extra))}\nKVMQA_USER={shlex.quote(user)}\n"
        f"KVMQA_DAEMONS={shlex.quote('|'.join(DAEMONS))}\n" + SCRIPT
    )


def parse_install(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "packages": {},
        "modules_load": [],
        "modprobe": "",
        "network_template": "",
        "user_groups": None,
    }
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key.startswith("pkg."):
            out["packages"][key[4:]] = value
        elif key == "apt_lists":
            out["apt_lists"] = int(value) if value.isdigit() else 0
        elif key in ("modules_load", "live"):
            out[key] = value.split()
        elif key == "user_groups":
            out["user_groups"] = None if value == "@absent" else value.split()
            out["user_exists"] = value != "@absent"
        elif key in ("manager", "modprobe", "network_template"):
            out[key] = value
    return out


def gather_install(session: HostContext, ctx: ActionContext) -> dict[str, Any]:
    res = session.target.run(install_script(session.facts, ctx), timeout=60)
    data = parse_install(res.stdout)
    data["rc"] = res.rc
    if res.rc != 0:
        data["error"] = (res.stderr or res.stdout).strip()[-300:]
    return data
