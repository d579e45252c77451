"""The probe: one POSIX sh script per host, one round trip, every raw fact the verify stages need.

The script is this folder's `NN-*.sh` snippets (in name order: the shared sh library and the sections every
stage
reads), then the snippets of the stages that apply to the host (`Registry.probe_snippets(roles)`: each stage's
`probe.sh`, then site stages' snippets). Its output is parsed by `parse_probe` with the stages' parsers.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

from kvmqa.core.facts import HostFacts
from kvmqa.core.stage import ProbeParser
from kvmqa.gather.distro import RPM_KERNELS, managers_by_id, probe_package_names
from kvmqa.gather.facts import parse_probe

if TYPE_CHECKING:
    from kvmqa.transport.target import Target

PROBE_TIMEOUT = 180


def _snippets() -> list[tuple[str, str]]:
    folder = resources.files(__package__)
    return sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sh"))


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
    """One shared snippet's text (`00-lib.sh`, `10-host.sh`)."""
    return dict(_snippets())[name]


def build_script(stages: Sequence[str]) -> str:
    """The probe: the shared snippets, then `stages`: the snippets of the stages that apply to the target
    (`Registry.probe_snippets(roles)`)."""
    parts = preamble()
    parts += [f"# --- {name}\n{text}" for name, text in _snippets()]
    parts += [f"# --- stage snippet {n}\n{text}" for n, text in enumerate(stages, 1)]
    return "\n".join(parts) + "\n"


def run_probe(
    target: Target, snippets: Sequence[str], parsers: Sequence[ProbeParser]
) -> tuple[HostFacts, str]:
    """Probe one target (one round trip) and return its facts and the raw output: `snippets` and `parsers` are
    the run's stages' (`Registry.probe_snippets(target.roles)`, `Registry.probe_parsers()`)."""
    from kvmqa.transport.target import TargetError, first_meaningful_line

    result = target.run(build_script(snippets), timeout=PROBE_TIMEOUT, role="probe")
    if "@@kvmqa:probe_env" not in result.stdout:
        if result.timed_out:
            why = f"did not finish within the probe timeout of {PROBE_TIMEOUT} s (exit {result.rc})"
        else:
            why = (
                f"did not run: {first_meaningful_line(result.stderr or result.stdout) or 'no output'} (exit "
                f"{result.rc})"
            )
        raise TargetError(
            f"{target.name}: probe over {target.backend} on {target.url} {why}",
            result.stderr or result.stdout,
        )
    facts = parse_probe(result.stdout, parsers)
    facts["probe"]["duration_s"] = round(result.duration, 3)
    facts["probe"]["target"] = target.url
    facts["probe"]["timed_out"] = result.timed_out
    return facts, result.stdout
