"""vdsm replies for the stand-in `vdsm-client` and `vdsm-tool`, shaped as real vdsm's (reference section 3,
oVirt/vdsm source, and the recordings in tests/recorded/vdsm/).

Scenario: the environment variable KVMQA_STANDIN_VDSM_SCENARIO, one of
`healthy` (default: vdsm 4.50.7 on libvirt 10.10 / qemu-kvm 9.1, which offers cluster level 4.8),
`cluster-4.7` (the same vdsm on libvirt 10.0 / qemu-kvm 8.2: vdsm offers up to 4.7), `mom-inactive`
(MOM unreachable: momStatus 'inactive' and no KSM keys), `not-configured`, `kvm-disabled`, `down`.

Replay: KVMQA_STANDIN_VDSM_CAPS / KVMQA_STANDIN_VDSM_STATS name a JSON file that `vdsm-client Host
getCapabilities` / `getStats` print instead; KVMQA_STANDIN_VDSM_IS_CONFIGURED a text file that `vdsm-tool
is-configured` prints, exiting 1 when it holds vdsm's InvalidRun text or a traceback (the only ways vdsm-tool
exits non-zero), else 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCENARIO_ENV = "KVMQA_STANDIN_VDSM_SCENARIO"
REPLAY_ENV = {
    "getCapabilities": "KVMQA_STANDIN_VDSM_CAPS",
    "getStats": "KVMQA_STANDIN_VDSM_STATS",
    "is-configured": "KVMQA_STANDIN_VDSM_IS_CONFIGURED",
}

CPUINFO_FLAGS = (
    "fpu,vme,de,pse,tsc,msr,pae,mce,cx8,apic,sep,mtrr,pge,mca,cmov,pat,pse36,clflush,mmx,fxsr,sse,"
    "sse2,ss,syscall,nx,pdpe1gb,rdtscp,lm,constant_tsc,rep_good,nopl,xtopology,cpuid,pni,pclmulqdq,"
    "vmx,ssse3,fma,cx16,pcid,sse4_1,sse4_2,x2apic,movbe,popcnt,aes,xsave,avx,f16c,rdrand,hypervisor,"
    "lahf_lm,abm,fsgsbase,bmi1,avx2,smep,bmi2,erms,invpcid,md_clear,spec_ctrl,ssbd"
)
# cpuinfo flags, libvirt domcapabilities features, then one model_<Name> per usable libvirt model.
MODELS = (
    "model_Haswell-noTSX,model_Haswell-noTSX-IBRS,model_IvyBridge,model_IvyBridge-IBRS,model_SandyBridge,"
    "model_SandyBridge-IBRS,model_Westmere,model_Westmere-IBRS,model_Nehalem,model_Nehalem-IBRS,"
    "model_Penryn,model_Conroe,model_qemu64,model_kvm64"
)


CLUSTER_LEVELS = ["4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8"]


def scenario() -> str:
    return os.environ.get(SCENARIO_ENV, "healthy")


def replay(verb: str) -> str | None:
    """The recorded reply for `verb` when its replay variable names a file, else None."""
    path = os.environ.get(REPLAY_ENV[verb])
    return Path(path).read_text() if path else None


def is_configured_rc(output: str) -> int:
    # static/usr/bin/vdsm-tool returns 1 for a UsageError (is-configured's InvalidRun) or any other exception
    failed = "One of the modules is not configured to work with VDSM" in output
    return 1 if failed or "Traceback (most recent call last)" in output else 0


def _packages() -> dict[str, dict[str, str]]:
    # vdsm 4.50.7 (lib/vdsm/common/dsaversion.py.in) offers 4.7 with libvirt >= 8.0 and 4.8 with libvirt
    # >= 10.10 and qemu-kvm >= 9.1
    libvirt, qemu = ("10.0.0", "8.2.0") if scenario() == "cluster-4.7" else ("10.10.0", "9.1.0")
    return {
        "vdsm": {"version": "4.50.7", "release": "1.el9"},
        "libvirt": {"version": libvirt, "release": "1.el9"},
        "qemu-kvm": {"version": qemu, "release": "1.el9"},
    }


def capabilities() -> dict[str, Any]:
    return {
        "kvmEnabled": "false" if scenario() == "kvm-disabled" else "true",
        "cpuFlags": f"{CPUINFO_FLAGS},{MODELS}",
        "cpuModel": "Intel Core Processor (Haswell, no TSX)",
        "cpuCores": "4",
        "cpuThreads": "4",
        "cpuSockets": "1",
        "cpuSpeed": "2394.454",
        "onlineCpus": "0,1,2,3",
        "memSize": "7768",
        "reservedMem": "321",
        "numaNodes": {"0": {"cpus": [0, 1, 2, 3], "totalMemory": "7768"}},
        "software_version": "4.50.7",
        "software_revision": "1.el9",
        "version_name": "Snow Man",
        "supportedENGINEs": ["4.2", "4.3", "4.4", "4.5"],
        "clusterLevels": CLUSTER_LEVELS[:-1] if scenario() == "cluster-4.7" else CLUSTER_LEVELS,
        "operatingSystem": {
            "release": "1.el9",
            "version": "9",
            "name": "RHEL",
            "pretty_name": "CentOS Stream 9",
        },
        "kdumpStatus": 0,
        "selinux": {"mode": "1"},
        "uuid": "4c4c4544-0000-4000-8000-000000000001",
        "hooks": {},
        "nestedVirtualization": False,
        "fipsEnabled": False,
        "hostedEngineDeployed": False,
        "packages2": _packages(),
    }


def stats() -> dict[str, Any]:
    reply: dict[str, Any] = {
        "cpuIdle": "97.25",
        "cpuUser": "1.50",
        "cpuSys": "1.25",
        "cpuLoad": "0.12",
        "memFree": 6120,
        "memUsed": "21",
        "swapTotal": 2047,
        "swapFree": 2047,
        "vmCount": 0,
        "vmActive": 0,
        "vmMigrating": 0,
        "elapsedTime": "8123",
        "bootTime": "1763630000",
        "thpState": "always",
        "momStatus": "active",
        "netConfigDirty": "False",
        "network": {},
        "storageDomains": {},
        "diskStats": {},
        "multipathHealth": {},
        "haStats": {
            "configured": False,
            "active": False,
            "score": 0,
            "globalMaintenance": False,
            "localMaintenance": False,
        },
    }
    if scenario() == "mom-inactive":
        reply["momStatus"] = "inactive"  # lib/vdsm/momIF.py: MOM unreachable, and getKsmStats() adds nothing
    else:
        reply.update(ksmState=False, ksmPages=100, ksmMergeAcrossNodes=True, memShared=0, ksmCpu=0)
    return reply


REFUSED = (
    "vdsm-client: Connection to localhost:54321 with use_tls=True, timeout=60 failed: "
    "[Errno 111] Connection refused"
)
NOT_CONFIGURED = (
    "libvirt is not configured for vdsm yet\n"
    "Modules certificates, libvirt are not configured\n"
    "Error:  \n\nOne of the modules is not configured to work with VDSM.\n"
    "To configure the module use the following:\n'vdsm-tool configure [--module module-name]'.\n"
    "If all modules are not configured try to use:\n'vdsm-tool configure --force'\n"
    "(The force flag will stop the module's service and start it\nafterwards automatically to load the new "
    "configuration.)"
)
# A healthy host's full run: lvm, sanlock and managedvolumedb answer YES, libvirt MAYBE (printed),
# passwd MAYBE (silent), multipath YES ("Current revision ... preserving"); lib/vdsm/tool/configurators/*.py.
CONFIGURED = (
    "lvm is configured for vdsm\n"
    "sanlock is configured for vdsm\n"
    "Managed volume database is already configured\n"
    "libvirt is already configured for vdsm\n"
    "Current revision of multipath.conf detected, preserving"
)
