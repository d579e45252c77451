"""Inventories: `--hosts` URLs, kvmqa's YAML, and Ansible inventories (read by ansible-core) -> Targets.

Errors name the file (and the line, where kvmqa parsed it). Ansible inventories:
kvmqa/config/ansible_inventory.py.

kvmqa YAML:

    defaults: {user: qa, sudo: true, identity_file: ~/.ssh/kvmqa, roles: [kvm-host]}
    hosts:
      - {name: hv1, address: 10.0.0.5, port: 22, roles: [kvm-host, ovirt-host]}
      - {name: self, url: "local://"}
    engine: {url: https://engine.lab/ovirt-engine, user: admin@internal, password_file: /root/.engine-pw,
    ca_file: ca.pem}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from kvmqa.config.hosts import ROLES, InventoryError, check_unique
from kvmqa.config.yamlerrors import yaml_error_text
from kvmqa.transport.target import BACKENDS, Target, TargetError

HOST_KEYS = {
    "name",
    "address",
    "url",
    "user",
    "port",
    "identity_file",
    "sudo",
    "roles",
    "vars",
    "backend",
    "known_hosts",
    "ssh_config",
}


class LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers each mapping's line (as '__line__')."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_with_lines(
    text: str, src: str, error: type[Exception], loader: type[LineLoader] = LineLoader
) -> Any:
    """YAML whose mappings carry their '__line__'; a syntax error raises `error` naming the file and the
    line."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise error(yaml_error_text(exc, src)) from None


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


_KVMQA_KEYS = re.compile(r"^(hosts|defaults|engine):", re.M)


def is_kvmqa_inventory(path: Path) -> bool:
    """kvmqa's own format, by content: a YAML file with a top-level `hosts:` list. Anything else (a directory,
    an
    executable script, INI whatever its name, Ansible YAML with or without `all:`, a plugin's YAML) is
    Ansible's."""
    if path.is_dir() or (path.is_file() and os.access(path, os.X_OK)):
        return False
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # a broken kvmqa file (its own parser names the line) versus INI and friends, which are no YAML at all
        return bool(_KVMQA_KEYS.search(text)) and not re.search(r"^\[[^\]]+\]\s*$", text, re.M)
    return (
        isinstance(data, dict)
        and "hosts" in data
        and (data["hosts"] is None or isinstance(data["hosts"], list))
    )


def load_inventory(
    path: Path,
    *,
    sudo: bool = False,
    strict_host_keys: bool = True,
    limit: str | None = None,
    vault_password_file: Path | None = None,
    **common: Any,
) -> tuple[list[Target], dict[str, Any]]:
    """Targets and the inventory-level settings (e.g. `engine`) from kvmqa's YAML inventory or any Ansible
    inventory."""
    src = str(path)
    if not path.exists():
        raise InventoryError(f"{src}: cannot read inventory: no such file or directory")
    if not is_kvmqa_inventory(path):
        from kvmqa.config.ansible_inventory import load_ansible_inventory

        return load_ansible_inventory(
            [src],
            limit=limit,
            vault_password_file=vault_password_file,
            sudo=sudo,
            strict_host_keys=strict_host_keys,
            where=src,
            **common,
        ), {}
    if limit:
        raise InventoryError(f"--limit {limit}: applies to Ansible inventories; {src} is a kvmqa inventory")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InventoryError(f"{src}: cannot read inventory: {exc.strerror}") from None
    data = load_yaml_with_lines(text, src, InventoryError)
    if not isinstance(data, dict) or "hosts" not in data:
        raise InventoryError(f"{src}: a kvmqa inventory is a mapping with a 'hosts' list")
    return _kvmqa_yaml(data, src, sudo=sudo, strict_host_keys=strict_host_keys, **common), strip_lines(
        data.get("engine") or {}
    )


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
        merged = {
            **{k: v for k, v in defaults.items() if k != "__line__"},
            **{k: v for k, v in entry.items() if k != "__line__"},
        }
        unknown = sorted(set(merged) - HOST_KEYS)
        if unknown:
            raise InventoryError(
                f"{src}:{line}: host entry has unknown key {unknown[0]!r} (known: "
                f"{', '.join(sorted(HOST_KEYS))})"
            )
        targets.append(_target(merged, f"{src}:{line}", **common))
    check_unique(targets, src)
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
        "roles": tuple(roles),
        "vars": strip_lines(h.get("vars") or {}),
        "sudo": bool(h.get("sudo", sudo)),
        "strict_host_keys": strict_host_keys,
        **common,
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
                raise InventoryError(
                    f"{where}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
                )
            user = f"{h['user']}@" if h.get("user") else ""
            t = Target.from_url(
                f"{backend}://{user}{h['address']}{':' + str(port) if port else ''}", **kwargs
            )
    except TargetError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    if h.get("name"):
        t.name = str(h["name"])
    return t


def targets_from_hosts(
    spec: str, *, limit: str | None = None, vault_password_file: Path | None = None, **kwargs: Any
) -> list[Target]:
    """Targets from `--hosts`: URLs (local://, ssh://, paramiko://) and testinfra's
    `ansible://PATTERN?ansible_inventory=FILE`."""
    urls = [s.strip() for s in spec.split(",") if s.strip()]
    if limit and not any(u.startswith("ansible://") for u in urls):
        raise InventoryError(
            f"--limit {limit}: applies to Ansible inventories (--inventory, or --hosts ansible://...)"
        )
    targets = []
    for url in urls:
        if url.startswith("ansible://"):
            from kvmqa.config.ansible_inventory import targets_from_ansible_url

            targets += targets_from_ansible_url(
                url, limit=limit, vault_password_file=vault_password_file, **kwargs
            )
            continue
        try:
            targets.append(Target.from_url(url, **kwargs))
        except (TargetError, ValueError) as exc:
            raise InventoryError(f"--hosts: {exc}") from None
    if not targets:
        raise InventoryError("--hosts is empty")
    check_unique(targets, "--hosts")
    return targets
