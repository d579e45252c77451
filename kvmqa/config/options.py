"""Run options: everything a QA engineer can say on the command line, as one plain object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class Secret:
    """A secret value that never prints itself (reports, logs, reprs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass
class RunOptions:
    hosts: list[str] = field(default_factory=list)
    inventory: Path | None = None
    limit: str | None = None  # Ansible host pattern (--limit), for Ansible inventories
    vault_password_file: Path | None = None  # decrypts vaulted values of an Ansible inventory
    sudo: bool = False
    ssh_identity_file: Path | None = None
    strict_host_keys: bool = True
    command_timeout: float = 120.0
    connect_timeout: float = 10.0
    profile_path: Path | None = None
    mode: str = "verify"  # verify | install
    plan: bool = False
    allow_emulation: bool = False
    guest_image: Path | None = None
    cleanup: bool = False
    reports_dir: Path = Path("reports")
    libvirt_user: str | None = None
    waivers: Path | None = None
    save_baseline: Path | None = None
    compare_baseline: Path | None = None
    engine_url: str | None = None
    engine_user: str = "admin@internal"
    engine_password: Secret | None = None
    engine_ca: Path | None = None

    @property
    def install(self) -> bool:
        """Install steps run for real (they change hosts)."""
        return self.mode == "install" and not self.plan

    @property
    def install_steps(self) -> bool:
        """Install steps are decided at all: run (--mode install) or only planned (--plan)."""
        return self.mode == "install" or self.plan


def engine_password_from(file: str | None, env_name: str = "KVMQA_ENGINE_PASSWORD") -> Secret | None:
    """The engine password comes from a file or the environment, never from the command line."""
    if file:
        return Secret(Path(file).read_text().strip())
    value = os.environ.get(env_name)
    return Secret(value) if value else None
