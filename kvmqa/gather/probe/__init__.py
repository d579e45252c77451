"""The probe: one POSIX sh script per host, one round trip, every raw fact the verify stages need.

The script is the concatenation of this folder's `NN-*.sh` snippets (in name order). A snippet whose
first lines say `# roles: <role> ...` runs only on targets with one of those roles.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

from kvmqa.core.facts import HostFacts
from kvmqa.gather.distro import RPM_KERNELS, managers_by_id, probe_package_names
from kvmqa.gather.facts import parse_probe

if TYPE_CHECKING:
    from kvmqa.transport.target import Target

PROBE_TIMEOUT = 180


def _snippets() -> list[tuple[str, str]]:
    folder = resources.files(__package__)
    return sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sh"))


def snippet_roles(text: str) -> set[str] | None:
    for line in text.splitlines()[:5]:
        if line.startswith("# roles:"):
            return set(line.split(":", 1)[1].split())
    return None


def preamble() -> list[str]:
    """The variables every snippet may read: the package names to ask, the manager of each distro ID, ..."""
    deb, rpm = probe_package_names()
    kvm_py = resources.files(__package__).joinpath("kvm_probe.py").read_text()
    return [
        "LC_ALL=C; export LC_ALL",
        f"KVMQA_PKGS_DEB={shlex.quote(deb)}",
        f"KVMQA_PKGS_RPM={shlex.quote(rpm)}",
        f"KVMQA_KERNELS_RPM={shlex.quote(' '.join(RPM_KERNELS))}",
        f"KVMQA_MANAGERS={shlex.quote(managers_by_id())}",
        f"KVMQA_KVM_PY={shlex.quote(kvm_py)}",
        "export KVMQA_KVM_PY",
    ]


def snippet(name: str) -> str:
    """One snippet's text (`00-lib.sh`, `25-host.sh`, ...)."""
    return dict(_snippets())[name]


def build_script(roles: tuple[str, ...] = ("kvm-host",), extra: Sequence[str] = ()) -> str:
    """The probe for a target with these roles; `extra`: site stages' snippets (Stage.probe)."""
    parts = preamble()
    for name, text in _snippets():
        wanted = snippet_roles(text)
        if wanted is None or wanted & set(roles):
            parts.append(f"# --- {name}\n{text}")
    parts += [f"# --- site snippet {n}\n{text}" for n, text in enumerate(extra, 1)]
    return "\n".join(parts) + "\n"


def run_probe(target: Target, extra: Sequence[str] = ()) -> tuple[HostFacts, str]:
    """Probe one target (one round trip) and return its facts and the raw output."""
    from kvmqa.transport.target import TargetError, first_meaningful_line

    result = target.run(build_script(target.roles, extra), timeout=PROBE_TIMEOUT, role="probe")
    if "@@kvmqa:probe_env" not in result.stdout:
        if result.timed_out:
            why = f"did not finish within the probe timeout of {PROBE_TIMEOUT} s (exit {result.rc})"
        else:
            why = f"did not run: {first_meaningful_line(result.stderr or result.stdout) or 'no output'} (exit {result.rc})"
        raise TargetError(f"{target.name}: probe over {target.backend} on {target.url} {why}", result.stderr or result.stdout)
    facts = parse_probe(result.stdout)
    facts["probe"]["duration_s"] = round(result.duration, 3)
    facts["probe"]["target"] = target.url
    facts["probe"]["timed_out"] = result.timed_out
    return facts, result.stdout
