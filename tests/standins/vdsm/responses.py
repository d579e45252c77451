"""Documented vdsm replies for the stand-in `vdsm-client` and `vdsm-tool` (reference section 3).

Scenario: the environment variable KVMQA_STANDIN_VDSM_SCENARIO, one of
`healthy` (default), `mom-disabled`, `not-configured`, `kvm-disabled`, `down`.
"""

from __future__ import annotations

import os
from typing import Any

SCENARIO_ENV = "KVMQA_STANDIN_VDSM_SCENARIO"

CPUINFO_FLAGS = ("fpu,vme,de,pse,tsc,msr,pae,mce,cx8,apic,sep,mtrr,pge,mca,cmov,pat,pse36,clflush,mmx,fxsr,sse,"
                 "sse2,ss,syscall,nx,pdpe1gb,rdtscp,lm,constant_tsc,rep_good,nopl,xtopology,cpuid,pni,pclmulqdq,"
                 "vmx,ssse3,fma,cx16,pcid,sse4_1,sse4_2,x2apic,movbe,popcnt,aes,xsave,avx,f16c,rdrand,hypervisor,"
                 "lahf_lm,abm,fsgsbase,bmi1,avx2,smep,bmi2,erms,invpcid,md_clear,spec_ctrl,ssbd")
# cpuinfo flags, libvirt domcapabilities features, then one model_<Name> per usable libvirt model.
MODELS = ("model_Haswell-noTSX,model_Haswell-noTSX-IBRS,model_IvyBridge,model_IvyBridge-IBRS,model_SandyBridge,"
          "model_SandyBridge-IBRS,model_Westmere,model_Westmere-IBRS,model_Nehalem,model_Nehalem-IBRS,"
          "model_Penryn,model_Conroe,model_qemu64,model_kvm64")


def scenario() -> str:
    return os.environ.get(SCENARIO_ENV, "healthy")


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
        "software_version": "4.50.3.4",
        "software_revision": "1.el9",
        "supportedENGINEs": ["4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8"],
        "clusterLevels": ["4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8"],
        "operatingSystem": {"release": "1.el9", "version": "9", "name": "RHEL", "pretty_name": "CentOS Stream 9"},
        "kdumpStatus": 0,
        "selinux": {"mode": "1"},
        "uuid": "4c4c4544-0000-4000-8000-000000000001",
        "hooks": {},
        "nestedVirtualization": False,
        "fipsEnabled": False,
        "hostedEngineDeployed": False,
        "packages2": {"vdsm": {"version": "4.50.3.4", "release": "1.el9"},
                      "libvirt": {"version": "10.0.0", "release": "6.el9"},
                      "qemu-kvm": {"version": "8.2.0", "release": "11.el9"}},
    }


def stats() -> dict[str, Any]:
    mom = {"mom-disabled": "disabled"}.get(scenario(), "active")
    return {
        "cpuIdle": "97.25", "cpuUser": "1.50", "cpuSys": "1.25", "cpuLoad": "0.12",
        "memFree": 6120, "memUsed": "21", "memShared": 0, "swapTotal": 2047, "swapFree": 2047,
        "vmCount": 0, "vmActive": 0, "elapsedTime": "8123", "bootTime": "1763630000",
        "ksmState": False, "ksmPages": 100, "thpState": "always", "momStatus": mom,
        "network": {}, "storageDomains": {}, "diskStats": {}, "haStats": {"configured": False},
        "multipathHealth": {},
    }


REFUSED = ("vdsm-client: Connection to localhost:54321 with use_tls=True, timeout=60 failed: "
           "[Errno 111] Connection refused")
NOT_CONFIGURED = (
    "Modules certificates, libvirt are not configured\n"
    "Error:  \n\nOne of the modules is not configured to work with VDSM.\n"
    "To configure the module use the following:\n'vdsm-tool configure [--module module-name]'.\n"
    "If all modules are not configured try to use:\n'vdsm-tool configure --force'\n"
    "(The force flag will stop the module's service and start it\nafterwards automatically to load the new "
    "configuration.)"
)
CONFIGURED = "lvm is configured for vdsm\nlibvirt is already configured for vdsm\nManaged volume database is already configured"
