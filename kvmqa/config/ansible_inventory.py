"""Ansible inventories, read by ansible-core itself: `ansible-inventory --list` JSON -> Targets.

    targets = load_ansible_inventory(["lab/hosts"], limit="kvm_hosts:!hv3",
    vault_password_file=Path("vault-pw"))

Any source Ansible accepts works (INI or YAML chosen by content, a directory with group_vars/ and host_vars/,
an executable dynamic inventory script, an inventory plugin's YAML): kvmqa never parses it. The JSON has every
host's merged variables, but neither decrypts `!vault` values nor renders Jinja2 templates (checked with
ansible-core 2.19): kvmqa does both for the connection variables it reads, with ansible-core's own VaultLib
and
Templar, only for the hosts that need it. Connection variables (and their older aliases) -> Target:

    ansible_host / ansible_ssh_host                              address (default: the inventory name)
    ansible_port / ansible_ssh_port                              port
    ansible_user / ansible_ssh_user                              user
    ansible_ssh_private_key_file / ansible_private_key_file      identity file
    ansible_ssh_common_args, ansible_ssh_extra_args              extra OpenSSH arguments (ProxyJump, -o
    ProxyCommand=...)
    ansible_connection ssh | smart -> ssh, paramiko | paramiko_ssh -> paramiko, local -> local; others: an
    error
    ansible_become (+ ansible_become_method sudo, ansible_become_user root) -> sudo; another method (su,
        doas, ...) or user: that host's one error (reach.probe, ERROR; never connected), the others run

Groups become roles as in kvmqa's own format (kvm_hosts -> kvm-host, ovirt_hosts -> ovirt-host, ovirt_engine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kvmqa.config.hosts import InventoryError, check_unique, roles_of_groups
from kvmqa.transport.target import Target

EXTRA = "kvmqa[ansible]"
LIST_TIMEOUT = 600  # a dynamic inventory script that never answers
CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "paramiko",
    "paramiko_ssh": "paramiko",
    "local": "local",
}
# kvmqa's field -> the Ansible variables that set it, first one wins (the later names are older aliases)
CONNECTION_VARS: dict[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "identity_file": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "ssh_common_args": ("ansible_ssh_common_args",),
    "ssh_extra_args": ("ansible_ssh_extra_args",),
    "connection": ("ansible_connection",),
    "become": ("ansible_become",),
    "become_method": ("ansible_become_method",),
    "become_user": ("ansible_become_user",),
}
VAULT_KEY = "__ansible_vault"  # how `ansible-inventory --list` prints a vaulted value
_NOT_DECRYPTED = "\x00kvmqa-vaulted\x00"
TRUE_WORDS = ("yes", "true", "on", "1", "y", "t")
FALSE_WORDS = ("no", "false", "off", "0", "n", "f", "")


def ansible_inventory_cli(where: str) -> list[str]:
    """The `ansible-inventory` of this Python's ansible-core (next to the interpreter, else on PATH)."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    found = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    try:
        installed = importlib.util.find_spec("ansible") is not None
    except ImportError:  # a broken or shadowed installation
        installed = False
    if not installed or not found:
        raise InventoryError(
            f"{where}: reading an Ansible inventory needs ansible-core, which is not installed: "
            f"pip install '{EXTRA}' (./run installs it)"
        )
    return [found]


def ansible_env() -> dict[str, str]:
    """Ansible's settings for reading inventories: a source (or a file of a directory source) that no plugin
    can parse
    is an error, not a warning that leaves hosts out (a lab's own ANSIBLE_INVENTORY_* environment still
    wins)."""
    strict = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
    return {
        **strict,
        **os.environ,
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def ansible_list(
    sources: list[str], *, limit: str | None = None, vault_password_file: Path | None = None, where: str
) -> dict[str, Any]:
    """`ansible-inventory --list` as data; any failure is one InventoryError naming the source and Ansible's
    reason."""
    argv = ansible_inventory_cli(where)
    for s in sources:
        argv += ["-i", s]
    argv.append("--list")
    if limit:
        argv += ["--limit", limit]
    if vault_password_file:
        argv += ["--vault-password-file", str(vault_password_file)]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT,
            env=ansible_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{where}: ansible-inventory did not answer within {LIST_TIMEOUT} s "
            "(a dynamic inventory script that hangs?)"
        ) from None
    except OSError as exc:
        raise InventoryError(f"{where}: cannot run ansible-inventory: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise InventoryError(
            f"{where}: Ansible cannot read this inventory: {ansible_reason(done.stderr, sources)}"
        )
    try:
        data = json.loads(done.stdout)
    except ValueError as exc:
        raise InventoryError(f"{where}: ansible-inventory printed no JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{where}: ansible-inventory printed {type(data).__name__}, not a mapping")
    return data


_PLUGIN_FAILED = re.compile(
    r"^\[WARNING\]:\s+(?:\* )?Failed to parse .*?with '?(?P<plugin>[\w.]+)'? plugin: (?P<msg>.*)$"
)
_NOT_THIS_FORMAT = (
    "Did not find expected <document start>",
    "Plugin configuration YAML file, not YAML inventory",
    "YAML inventory has invalid structure",
)


_ORIGIN = re.compile(
    r"^Origin: (?:<inventory plugin '[\w.]+' with source '(?P<source>[^']+)'>|(?P<path>\S+?))\s*$"
)


def _looks_like_ini(path: Path) -> bool | None:
    """INI (a `[group]` line) or not, for a file; None for anything else."""
    try:
        text = path.read_text(errors="replace") if path.is_file() else None
    except OSError:
        return None
    return None if text is None else bool(re.search(r"^\s*\[[^\]]+\]\s*$", text, re.M))


def ansible_reason(stderr: str, sources: list[str] | None = None) -> str:
    """Ansible's stderr (several screens in 2.19) as one line: what the plugins that fit the file said,
    where."""
    lines = stderr.splitlines()
    failures: dict[str, tuple[str, str]] = {}  # plugin -> (message, origin)
    script_stderr = ""
    error = ""
    for i, line in enumerate(lines):
        m = _PLUGIN_FAILED.match(line.strip())
        if m:
            origin = ""
            for later in lines[i + 1 :]:
                if _PLUGIN_FAILED.match(later.strip()):
                    break
                o = _ORIGIN.match(later.strip())
                if o:
                    origin = o.group("source") or o.group("path") or ""
                    if re.search(r":\d+(:\d+)?$", origin):  # a line number: the most telling origin
                        break
            failures.setdefault(m.group("plugin"), (m.group("msg").strip(), origin))
        elif line.strip() == "Standard error from inventory script:":
            script_stderr = next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
        elif line.startswith(("[ERROR]:", "ERROR!")) and not error:
            error = (
                line.split(":", 1)[1].strip() if line.startswith("[ERROR]") else line[len("ERROR!") :].strip()
            )
    if "script" in failures:  # an executable file: what the other plugins say about its text is noise
        msg, origin = failures["script"]
        failures = {"script": (msg + (f" (stderr: {script_stderr})" if script_stderr else ""), origin)}
    if any("no vault secrets found" in m for m, _ in failures.values()):
        return "it is vaulted and no vault password was given: pass --vault-password-file"
    telling = {
        p: mo for p, mo in failures.items() if not any(n in mo[0] for n in _NOT_THIS_FORMAT)
    } or failures
    origins = {
        Path(o.rsplit(":", 2)[0] if re.search(r":\d+(:\d+)?$", o) else o) for _, o in telling.values() if o
    }
    kind = _looks_like_ini(next(iter(origins))) if len(origins) == 1 else None
    if kind is not None:  # the plugin that fits the file's content: the others' complaints are noise
        fitting = {p: mo for p, mo in telling.items() if (p == "ini") == kind}
        telling = fitting or telling
    by_message: dict[str, tuple[list[str], str]] = {}
    for plugin, (msg, origin) in telling.items():
        entry = by_message.setdefault(re.sub(r"^Failed to parse inventory: ", "", msg), ([], origin))
        entry[0].append(plugin)
    given = {str(Path(x)) for x in sources or []}
    parts = []
    for msg, (plugins, origin) in by_message.items():
        where = f" (at {origin})" if origin and origin not in given else ""
        parts.append(f"{' and '.join(plugins)} plugin{'s' if len(plugins) > 1 else ''}: {msg}{where}")
    if error and not parts:
        broken = broken_vars_file(sources or [])
        parts.append(broken or error)
    if not parts:
        tail = [x.strip() for x in lines if x.strip()]
        parts.append(tail[-1] if tail else "ansible-inventory failed without a message")
    return "; ".join(parts)


def broken_vars_file(sources: list[str]) -> str | None:
    """Ansible names no file for a broken group_vars/host_vars YAML: find it, and its line, with kvmqa's
    parser."""
    import yaml

    from kvmqa.config.yamlerrors import yaml_error_text

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !vault, !unsafe: not our business
    for source in sources:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
        for folder in ("group_vars", "host_vars"):
            for path in sorted((base / folder).rglob("*")) if (base / folder).is_dir() else []:
                if not path.is_file() or path.suffix not in ("", ".yml", ".yaml", ".json"):
                    continue
                try:
                    text = path.read_text(errors="replace")
                    if not text.startswith("$ANSIBLE_VAULT"):
                        yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
                except yaml.YAMLError as exc:
                    return yaml_error_text(exc, str(path))
                except OSError:
                    continue
    return None


def host_groups(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every host and all the groups it is in (directly or through `children`), as Ansible's `group_names`."""
    parents: dict[str, set[str]] = {}
    direct: dict[str, set[str]] = {}
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        for child in body.get("children", []) or []:
            parents.setdefault(child, set()).add(group)
        for host in body.get("hosts", []) or []:
            direct.setdefault(host, set()).add(group)
    for host in data.get("_meta", {}).get("hostvars", {}):
        direct.setdefault(host, set())
    out: dict[str, list[str]] = {}
    for host, groups in direct.items():
        seen: set[str] = set()
        todo = list(groups)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo += parents.get(g, ())
        out[host] = sorted(seen - {"all", "ungrouped"})
    return out


class _Resolver:
    """Vault decryption and Jinja2 rendering with ansible-core's own classes, imported only when needed."""

    def __init__(self, vault_password_file: Path | None, where: str) -> None:
        self.vault_password_file = vault_password_file
        self.where = where
        self._vault: Any = None
        self._loader: Any = None
        self._templar_obj: Any = None
        self._trust: Any = None
        self._groups: Any = None  # `groups`, trusted once for every host

    def groups(self, all_groups: dict[str, list[str]]) -> Any:
        if self._groups is None:
            self._groups = self.trusted(all_groups)
        return self._groups

    def loader(self) -> Any:
        if self._loader is None:
            from ansible.parsing.dataloader import DataLoader

            self._loader = DataLoader()
        return self._loader

    def decrypt(self, ciphertext: str, host: str, var: str) -> str:
        if self.vault_password_file is None:
            return _NOT_DECRYPTED
        from ansible.errors import AnsibleError

        try:
            if self._vault is None:
                from ansible.parsing.vault import VaultLib, get_file_vault_secret

                secret = get_file_vault_secret(filename=str(self.vault_password_file), loader=self.loader())
                secret.load()
                self._vault = VaultLib([("default", secret)])
            return str(self._vault.decrypt(ciphertext).decode())
        except (AnsibleError, OSError, UnicodeDecodeError) as exc:
            raise InventoryError(
                f"{self.where}: host {host}: {var} cannot be decrypted with --vault-password-file "
                f"{self.vault_password_file}: {_first_line(exc)}"
            ) from None

    def unvault(self, value: Any, host: str, var: str) -> Any:
        if isinstance(value, dict):
            if set(value) == {VAULT_KEY}:
                return self.decrypt(str(value[VAULT_KEY]), host, var)
            return {k: self.unvault(v, host, var) for k, v in value.items()}
        if isinstance(value, list):
            return [self.unvault(v, host, var) for v in value]
        return value

    def _templar(self) -> Any:
        if self._templar_obj is None:
            from ansible.template import Templar

            try:
                from ansible.template import (
                    trust_as_template,
                )  # ansible-core >= 2.19: inventory text is trusted
            except ImportError:  # pragma: no cover - older ansible-core renders any string

                def trust_as_template(v: Any) -> Any:
                    return v

            self._trust = trust_as_template
            self._templar_obj = Templar(loader=self.loader())
        return self._templar_obj

    def trusted(self, value: Any) -> Any:
        self._templar()
        return _deep_map(value, self._trust)

    def render(self, value: str, variables: dict[str, Any], host: str, var: str) -> Any:
        """`value` rendered with the host's variables (already trusted: see trusted())."""
        from ansible.errors import AnsibleError

        templar = self._templar()
        try:
            templar.available_variables = variables
            return templar.template(self._trust(value))
        except AnsibleError as exc:
            raise InventoryError(
                f"{self.where}: host {host}: {var}: template {value!r} cannot be rendered: {_first_line(exc)}"
            ) from None


def _deep_map(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _deep_map(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_map(v, fn) for v in value]
    return value


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _has_vault(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {VAULT_KEY} or any(_has_vault(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_vault(v) for v in value)
    return False


def connection_settings(
    name: str,
    hostvars: dict[str, Any],
    groups: list[str],
    all_groups: dict[str, list[str]],
    resolver: _Resolver,
) -> dict[str, Any]:
    """kvmqa's connection fields of one host from its merged hostvars: aliases applied, vault and templates
    resolved."""
    picked: dict[str, tuple[str, Any]] = {}
    for field_name, names in CONNECTION_VARS.items():
        for var in names:
            if var in hostvars:
                picked[field_name] = (var, hostvars[var])
                break
    needs_vars = any(_is_template(v) or _has_vault(v) for _, v in picked.values())
    variables: dict[str, Any] = {}
    if needs_vars:
        variables = resolver.trusted({k: resolver.unvault(v, name, k) for k, v in hostvars.items()})
        variables.update(
            inventory_hostname=name,
            inventory_hostname_short=name.split(".")[0],
            group_names=list(groups),
            groups=resolver.groups(all_groups),
        )
    out: dict[str, Any] = {}
    for field_name, (var, value) in picked.items():
        if needs_vars:
            value = variables[var]
            for _ in range(10):  # a template may give another template (Ansible renders until it settles)
                if not _is_template(value):
                    break
                value = resolver.render(value, variables, name, var)
        if isinstance(value, str) and _NOT_DECRYPTED in value:
            raise InventoryError(
                f"{resolver.where}: host {name}: {var} is vaulted (or uses a vaulted variable); "
                "give --vault-password-file"
            )
        out[field_name] = (var, value)
    return out


def _truthy(value: Any, var: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise InventoryError(f"{where}: {var} must be a boolean (yes/no, true/false), got {value!r}")


def become_problem(where: str, get: Any) -> str:
    """Why kvmqa cannot become root on this host as the inventory says (its one error), or ""."""
    method = str(get("become_method", "sudo") or "sudo")
    if method != "sudo":
        return (
            f"{where}: ansible_become_method {method!r} is not supported: kvmqa becomes root with "
            "passwordless sudo only (sudo -n); give this host ansible_become_method=sudo and a NOPASSWD "
            "sudo rule for its user, or ansible_user=root (kvmqa did not connect to it)"
        )
    become_user = str(get("become_user", "root") or "root")
    if become_user != "root":
        return (
            f"{where}: ansible_become_user {become_user!r} is not supported: kvmqa needs root; drop "
            "ansible_become_user for this host or set it to root (kvmqa did not connect to it)"
        )
    return ""


def target_from_hostvars(
    name: str,
    hostvars: dict[str, Any],
    groups: list[str],
    all_groups: dict[str, list[str]],
    resolver: _Resolver,
    *,
    sudo: bool,
    strict_host_keys: bool,
    **common: Any,
) -> Target:
    """One Target from one host's merged variables (as Ansible would connect to it)."""
    where = f"{resolver.where}: host {name}"
    conn = connection_settings(name, hostvars, groups, all_groups, resolver)

    def get(field_name: str, default: Any = None) -> Any:
        return conn[field_name][1] if field_name in conn else default

    def var(field_name: str) -> str:
        return str(conn[field_name][0])

    connection = str(get("connection", "ssh") or "ssh")
    if connection not in CONNECTIONS:
        raise InventoryError(
            f"{where}: ansible_connection {connection!r} is not supported by kvmqa "
            f"(use one of {', '.join(CONNECTIONS)})"
        )
    backend = CONNECTIONS[connection]
    become = _truthy(get("become"), var("become"), where) if "become" in conn else None
    kwargs: dict[str, Any] = {
        **common,
        "unusable": become_problem(where, get) if become else "",
        "strict_host_keys": strict_host_keys,
        "sudo": bool(become) if become is not None else sudo,
        "roles": roles_of_groups(groups),
        "vars": {k: v for k, v in hostvars.items() if not k.startswith("ansible_") and not _has_vault(v)},
    }
    if backend == "local":
        kwargs.pop("identity_file", None)
        return Target(name=name, backend="local", **kwargs)
    port = get("port")
    if port is not None:
        try:
            port = int(str(port))
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise InventoryError(f"{where}: {var('port')} must be a port number 1-65535, got {get('port')!r}")
    if get("identity_file"):
        kwargs["identity_file"] = Path(str(get("identity_file"))).expanduser()
    ssh_args: list[str] = []
    for field_name in ("ssh_common_args", "ssh_extra_args"):
        if get(field_name):
            try:
                ssh_args += shlex.split(str(get(field_name)))
            except ValueError as exc:
                raise InventoryError(
                    f"{where}: {var(field_name)} is not a valid argument list: {exc}"
                ) from None
    if ssh_args and backend == "paramiko":
        raise InventoryError(
            f"{where}: ansible_ssh_common_args/ansible_ssh_extra_args are OpenSSH arguments; with "
            "ansible_connection=paramiko kvmqa cannot apply them (use ssh)"
        )
    if ssh_args:
        kwargs["ssh_args"] = tuple(ssh_args)
    address = str(get("address") or name)
    user = get("user")
    return Target(
        name=name, backend=backend, host=address, user=str(user) if user else None, port=port, **kwargs
    )


def load_ansible_inventory(
    sources: list[str],
    *,
    limit: str | None = None,
    vault_password_file: Path | None = None,
    sudo: bool = False,
    strict_host_keys: bool = True,
    where: str | None = None,
    **common: Any,
) -> list[Target]:
    """Targets for every host ansible-core finds in `sources` (after `limit`), in Ansible's order."""
    where = where or ", ".join(sources) or "the default Ansible inventory"
    if vault_password_file is not None and not Path(vault_password_file).exists():
        raise InventoryError(f"--vault-password-file {vault_password_file}: no such file")
    data = ansible_list(sources, limit=limit, vault_password_file=vault_password_file, where=where)
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {}) or {}
    groups_of = host_groups(data)
    if not groups_of:
        raise InventoryError(
            f"{where}: no hosts"
            + (f" match --limit {limit!r}" if limit else " (ansible-inventory --list found none)")
        )
    all_groups: dict[str, list[str]] = {}
    for host, groups in groups_of.items():
        for g in ["all", *groups]:
            all_groups.setdefault(g, []).append(host)
    resolver = _Resolver(vault_password_file, where)
    targets = [
        target_from_hostvars(
            h,
            hostvars.get(h, {}) or {},
            groups_of[h],
            all_groups,
            resolver,
            sudo=sudo,
            strict_host_keys=strict_host_keys,
            **common,
        )
        for h in _ordered(data, groups_of)
    ]
    check_unique(targets, where)
    return targets


def _ordered(data: dict[str, Any], groups_of: dict[str, list[str]]) -> Iterable[str]:
    """Hosts in the order Ansible lists them (hostvars order), then any only named in a group."""
    listed = list(data.get("_meta", {}).get("hostvars", {}))
    known = set(listed)
    return listed + [h for h in groups_of if h not in known]


def targets_from_ansible_url(
    url: str, *, inventory: Path | None = None, limit: str | None = None, **kwargs: Any
) -> list[Target]:
    """testinfra's convention: `ansible://GROUP_OR_HOST_PATTERN?ansible_inventory=FILE` (default: Ansible's
    own)."""
    import urllib.parse

    rest = url[len("ansible://") :]
    pattern, _, query = rest.partition("?")
    params = urllib.parse.parse_qs(query)
    unknown = sorted(set(params) - {"ansible_inventory"})
    if unknown:
        raise InventoryError(f"--hosts {url}: unknown parameter {unknown[0]!r} (known: ansible_inventory)")
    source = params.get("ansible_inventory", [str(inventory)] if inventory else [])
    pattern = urllib.parse.unquote(pattern) or "all"
    where = f"--hosts {url}"
    targets = load_ansible_inventory(source, limit=pattern, where=where, **kwargs)
    # both select: Ansible's own answer for each pattern, intersected (`a:&b` would reorder a limit's terms)
    if limit:
        vault = kwargs.get("vault_password_file")
        chosen = set(host_groups(ansible_list(source, limit=limit, vault_password_file=vault, where=where)))
        targets = [t for t in targets if t.name in chosen]
        if not targets:
            raise InventoryError(f"{where}: no hosts match both {pattern!r} and --limit {limit!r}")
    return targets
