"""Inventories: `--hosts` URLs, kvmqa YAML, Ansible YAML and INI -> Targets. Errors name the file and line.

kvmqa YAML:

    defaults: {user: qa, sudo: true, identity_file: ~/.ssh/kvmqa, roles: [kvm-host]}
    hosts:
      - {name: hv1, address: 10.0.0.5, port: 22, roles: [kvm-host, ovirt-host]}
      - {name: self, url: "local://"}
    engine: {url: https://engine.lab/ovirt-engine, user: admin@internal, password_file: /root/.engine-pw, ca_file: ca.pem}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kvmqa.targets import BACKENDS, Target, TargetError
from kvmqa.yamlerrors import yaml_error_text

ROLES = ("kvm-host", "ovirt-engine", "ovirt-host")
HOST_KEYS = {"name", "address", "url", "user", "port", "identity_file", "sudo", "roles", "vars", "backend", "known_hosts",
             "ssh_config"}


class InventoryError(ValueError):
    pass


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers each mapping's line (as '__line__')."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_with_lines(text: str, src: str, error: type[Exception], loader: type[_LineLoader] = _LineLoader) -> Any:
    """YAML whose mappings carry their '__line__'; a syntax error raises `error` naming the file and the line."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise error(yaml_error_text(exc, src)) from None



def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def _normalise_role(name: str) -> str:
    return name.replace("_", "-").lower().rstrip("s") if name.replace("_", "-").lower().rstrip("s") in ROLES else name


def load_inventory(path: Path, *, sudo: bool = False, strict_host_keys: bool = True, **common: Any) -> tuple[list[Target], dict[str, Any]]:
    """Targets and the inventory-level settings (e.g. `engine`) from a kvmqa or Ansible inventory file."""
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InventoryError(f"{src}: cannot read inventory: {exc.strerror}") from None
    if path.suffix in (".ini", ".cfg", "") and not text.lstrip().startswith(("{", "hosts:", "all:", "defaults:", "---")):
        return _ansible_ini(text, src, sudo=sudo, strict_host_keys=strict_host_keys, **common), {}
    data = load_yaml_with_lines(text, src, InventoryError)
    if not isinstance(data, dict):
        raise InventoryError(f"{src}: an inventory is a mapping with 'hosts' (kvmqa) or 'all' (Ansible)")
    if "all" in data and "hosts" not in data:
        return _ansible_yaml(data, src, sudo=sudo, strict_host_keys=strict_host_keys, **common), {}
    if "hosts" not in data:
        raise InventoryError(f"{src}:{data.get('__line__', 1)}: no 'hosts' list (kvmqa) or 'all' group (Ansible)")
    return _kvmqa_yaml(data, src, sudo=sudo, strict_host_keys=strict_host_keys, **common), _strip_lines(data.get("engine") or {})


def _kvmqa_yaml(data: dict[str, Any], src: str, **common: Any) -> list[Target]:
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InventoryError(f"{src}: 'defaults' must be a mapping")
    hosts = data["hosts"]
    if not isinstance(hosts, list) or not hosts:
        raise InventoryError(f"{src}:{data.get('__line__', 1)}: 'hosts' must be a non-empty list")
    targets = []
    for entry in hosts:
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, dict):
            raise InventoryError(f"{src}: each host is a mapping or a string, got {entry!r}")
        line = entry.get("__line__", "?")
        merged = {**{k: v for k, v in defaults.items() if k != "__line__"}, **{k: v for k, v in entry.items() if k != "__line__"}}
        unknown = sorted(set(merged) - HOST_KEYS)
        if unknown:
            raise InventoryError(f"{src}:{line}: host entry has unknown key {unknown[0]!r} (known: {', '.join(sorted(HOST_KEYS))})")
        targets.append(_target(merged, f"{src}:{line}", **common))
    _check_unique(targets, src)
    return targets


def _target(h: dict[str, Any], where: str, *, sudo: bool, strict_host_keys: bool, **common: Any) -> Target:
    roles = h.get("roles", ["kvm-host"])
    if isinstance(roles, str):
        roles = [roles]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InventoryError(f"{where}: unknown role {bad[0]!r} (known: {', '.join(ROLES)})")
    port = h.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise InventoryError(f"{where}: port must be an integer 1-65535, got {port!r}")
    if h.get("vars") is not None and not isinstance(h.get("vars"), dict):
        raise InventoryError(f"{where}: vars must be a mapping")
    kwargs: dict[str, Any] = {
        "roles": tuple(roles), "vars": _strip_lines(h.get("vars") or {}), "sudo": bool(h.get("sudo", sudo)),
        "strict_host_keys": strict_host_keys, **common,
    }
    if h.get("identity_file"):
        kwargs["identity_file"] = Path(str(h["identity_file"])).expanduser()
    if h.get("known_hosts"):
        kwargs["known_hosts"] = Path(str(h["known_hosts"])).expanduser()
    if h.get("ssh_config"):
        kwargs["ssh_config"] = Path(str(h["ssh_config"])).expanduser()
        if not kwargs["ssh_config"].is_file():
            raise InventoryError(f"{where}: ssh_config {h['ssh_config']}: no such file")
    try:
        if h.get("url"):
            t = Target.from_url(str(h["url"]), **kwargs)
        else:
            if not h.get("address"):
                raise InventoryError(f"{where}: host entry needs 'address' or 'url'")
            backend = h.get("backend", "ssh")
            if backend not in BACKENDS:
                raise InventoryError(f"{where}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
            user = f"{h['user']}@" if h.get("user") else ""
            t = Target.from_url(f"{backend}://{user}{h['address']}{':' + str(port) if port else ''}", **kwargs)
    except TargetError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    if h.get("name"):
        t.name = str(h["name"])
    return t


def _check_unique(targets: list[Target], src: str) -> None:
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise InventoryError(f"{src}: host name {t.name!r} appears twice; names must be unique")
        seen.add(t.name)


ANSIBLE_VARS = {"ansible_host": "address", "ansible_user": "user", "ansible_port": "port",
                "ansible_ssh_private_key_file": "identity_file", "ansible_become": "sudo", "ansible_connection": "backend"}


def _from_ansible_vars(name: str, hostvars: dict[str, Any], roles: list[str], where: str, **common: Any) -> Target:
    h: dict[str, Any] = {"name": name, "address": name, "roles": roles or ["kvm-host"]}
    other = {}
    for k, v in hostvars.items():
        if k in ANSIBLE_VARS:
            h[ANSIBLE_VARS[k]] = v
        elif k != "__line__":
            other[k] = v
    if h.get("backend") == "local":
        h["url"] = "local://"
    elif h.get("backend") not in (None, "ssh", "paramiko"):
        raise InventoryError(f"{where}: ansible_connection {h['backend']!r} is not supported (use ssh, paramiko or local)")
    if isinstance(h.get("port"), str) and h["port"].isdigit():
        h["port"] = int(h["port"])
    if isinstance(h.get("sudo"), str):
        h["sudo"] = h["sudo"].lower() in ("true", "yes", "1")
    h["vars"] = other
    return _target(h, where, **common)


def _ansible_yaml(data: dict[str, Any], src: str, **common: Any) -> list[Target]:
    hosts: dict[str, dict[str, Any]] = {}
    roles: dict[str, set[str]] = {}
    lines: dict[str, Any] = {}

    def walk(group_name: str, group: dict[str, Any], inherited: dict[str, Any]) -> None:
        if group is None:
            return
        if not isinstance(group, dict):
            raise InventoryError(f"{src}: group {group_name!r} must be a mapping")
        gvars = {**inherited, **{k: v for k, v in (group.get("vars") or {}).items() if k != "__line__"}}
        for hname, hvars in (group.get("hosts") or {}).items():
            if hname == "__line__":
                continue
            hvars = hvars or {}
            lines.setdefault(hname, hvars.get("__line__", group.get("__line__", "?")))
            hosts[hname] = {**gvars, **hosts.get(hname, {}), **hvars}
            role = _normalise_role(group_name)
            roles.setdefault(hname, set())
            if role in ROLES:
                roles[hname].add(role)
        for cname, child in (group.get("children") or {}).items():
            if cname != "__line__":
                walk(cname, child, gvars)

    walk("all", data["all"], {})
    if not hosts:
        raise InventoryError(f"{src}: the Ansible inventory has no hosts")
    return [_from_ansible_vars(n, v, sorted(roles[n]), f"{src}:{lines[n]}", **common) for n, v in hosts.items()]


def _ansible_ini(text: str, src: str, **common: Any) -> list[Target]:
    hosts: dict[str, dict[str, Any]] = {}
    roles: dict[str, set[str]] = {}
    lines: dict[str, int] = {}
    group = "ungrouped"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.match(r"^\[([^\]]+)\]$", line)
        if m:
            group = m.group(1)
            if ":" in group and not group.endswith(":children"):
                group = "#vars"  # [group:vars] blocks are not host lines
            continue
        if group.endswith(":children") or group == "#vars":
            continue
        parts = line.split()
        name, assigns = parts[0], parts[1:]
        hv: dict[str, Any] = {}
        for a in assigns:
            if "=" not in a:
                raise InventoryError(f"{src}:{n}: expected key=value after the host name, got {a!r}")
            k, v = a.split("=", 1)
            hv[k] = v
        hosts[name] = {**hosts.get(name, {}), **hv}
        lines.setdefault(name, n)
        role = _normalise_role(group)
        roles.setdefault(name, set())
        if role in ROLES:
            roles[name].add(role)
    if not hosts:
        raise InventoryError(f"{src}: no hosts found (Ansible INI)")
    return [_from_ansible_vars(n, v, sorted(roles[n]), f"{src}:{lines[n]}", **common) for n, v in hosts.items()]


def targets_from_hosts(spec: str, **kwargs: Any) -> list[Target]:
    targets = []
    for url in [s for s in spec.split(",") if s.strip()]:
        try:
            targets.append(Target.from_url(url, **kwargs))
        except TargetError as exc:
            raise InventoryError(f"--hosts: {exc}") from None
    if not targets:
        raise InventoryError("--hosts is empty")
    _check_unique(targets, "--hosts")
    return targets
