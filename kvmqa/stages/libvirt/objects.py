"""install.default-network and install.storage-pool (stage libvirt): libvirt objects, through virsh on the
target.

Preconditions read facts['libvirt'] (the libvirt stage's own gatherer, one libvirt connection). Each command
is only the missing part: define, build, start, autostart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kvmqa.core.action import PLANNED, Action, ActionContext, Decision, needed, satisfied, unsupported

VIRSH = "virsh -q -c qemu:///system"
POOL_PATH = "/var/lib/libvirt/images"
NETWORK_TEMPLATE = "/usr/share/libvirt/networks/default.xml"
# libvirt's own default.xml, for targets without the template file.
DEFAULT_NETWORK_XML = """<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>"""


def _libvirt_state(facts: Mapping[str, Any], ctx: ActionContext, what: str) -> Decision | None:
    """None when facts['libvirt'] is usable; else why the object's state is unknown."""
    lv = facts.get("libvirt") or {}
    if lv.get("connected"):
        return None
    daemons = ctx.records.get("install.daemons")
    if daemons is not None and daemons.status == PLANNED:
        return needed(
            f"libvirt does not answer until install.daemons has run, so the {what} cannot be read now: "
            "assumed missing (install mode reads it after starting the daemons)"
        )
    return unsupported(
        f"libvirt does not answer, so the {what} cannot be checked or created: "
        f"{lv.get('error') or 'no libvirt facts'}"
    )


def default_network(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    return next(
        (n for n in (facts.get("libvirt") or {}).get("networks", []) if n.get("name") == "default"), None
    )


def _object_decision(
    facts: Mapping[str, Any],
    ctx: ActionContext,
    what: str,
    obj: dict[str, Any] | None,
    missing: str,
    gaps: Callable[[dict[str, Any]], list[tuple[str, bool]]],
    ok: Callable[[dict[str, Any]], str],
) -> Decision:
    """Unknown (libvirt down), missing, or which of its states (gaps: [(label, is_bad)]) are wrong."""
    unknown = _libvirt_state(facts, ctx, what)
    if unknown is not None:
        return unknown
    if obj is None:
        return needed(missing)
    bad = [label for label, wrong in gaps(obj) if wrong]
    return needed(f"{what.split()[-1]} {obj['name']} is " + ", ".join(bad)) if bad else satisfied(ok(obj))


def network_precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    return _object_decision(
        facts,
        ctx,
        "default network",
        default_network(facts),
        "no network named default",
        lambda n: [
            ("transient (not defined)", not n.get("persistent", True)),
            ("inactive", not n.get("active")),
            ("autostart off", not n.get("autostart")),
        ],
        lambda n: (
            f"network default ({n.get('forward')} on {n.get('bridge')} {n.get('address')}) is defined, "
            "active "
            "and autostarted"
        ),
    )


def network_commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    net = default_network(facts)
    out = []
    if net is None:
        template = (facts.get("install") or {}).get("network_template") or ""
        if template:
            out.append(f"{VIRSH} net-define {template}")
        else:
            out.append(
                f"f=$(mktemp) && cat > \"$f\" <<'EOF'\n{DEFAULT_NETWORK_XML}\nEOF\n"
                f'{VIRSH} net-define "$f"; rc=$?; rm -f "$f"; exit $rc'
            )
    elif not net.get("persistent", True):
        out.append(
            f'f=$(mktemp) && {VIRSH} net-dumpxml default > "$f" && {VIRSH} net-define "$f"; rc=$?; rm -f '
            '"$f"; exit $rc'
        )
    if net is None or not net.get("active"):
        out.append(f"{VIRSH} net-start default")
    if net is None or not net.get("autostart"):
        out.append(f"{VIRSH} net-autostart default")
    return out


def images_pool(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pool install mode manages: one named default, else any (not kvmqa-) pool at
    /var/lib/libvirt/images."""
    pools = [
        p
        for p in (facts.get("libvirt") or {}).get("pools", [])
        if not str(p.get("name", "")).startswith("kvmqa-")
    ]
    return next((p for p in pools if p.get("name") == "default"), None) or next(
        (p for p in pools if str(p.get("path", "")).rstrip("/") == POOL_PATH), None
    )


def pool_precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    return _object_decision(
        facts,
        ctx,
        "storage pool",
        images_pool(facts),
        f"no pool named default and none at {POOL_PATH}",
        lambda p: [("inactive", not p.get("active")), ("autostart off", not p.get("autostart"))],
        lambda p: f"pool {p['name']} ({p.get('type')} {p.get('path')}) is active and autostarted",
    )


def pool_commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    pool = images_pool(facts)
    name = pool["name"] if pool else "default"
    out = []
    if pool is None:
        out += [f"{VIRSH} pool-define-as default dir --target {POOL_PATH}", f"{VIRSH} pool-build default"]
    if pool is None or not pool.get("active"):
        out.append(f"{VIRSH} pool-start {name}")
    if pool is None or not pool.get("autostart"):
        out.append(f"{VIRSH} pool-autostart {name}")
    return out


DEFAULT_NETWORK = Action(
    "install.default-network",
    "libvirt",
    "define, start and autostart libvirt's default NAT network",
    network_precondition,
    network_commands,
    timeout=120,
    requires=("install.daemons",),
    needs_root=False,
    facts=("install", "libvirt"),
    hint="A start failure is often a subnet clash (192.168.122.0/24 in use) or missing dnsmasq/iptables",
)

STORAGE_POOL = Action(
    "install.storage-pool",
    "libvirt",
    f"define, build, start and autostart a dir storage pool 'default' at {POOL_PATH}",
    pool_precondition,
    pool_commands,
    timeout=120,
    requires=("install.daemons",),
    needs_root=False,
    facts=("libvirt",),
    hint=f"Check that {POOL_PATH} can be created and is not used by another pool",
)
