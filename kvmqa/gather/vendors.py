"""CPU vendors and their KVM modules, in one place (read by the cpu checks and the install step that loads
them).

>>> vendor_of("HygonGenuine"), kvm_module_for("HygonGenuine")
('amd', 'kvm_amd')
"""

from __future__ import annotations

# /proc/cpuinfo vendor_id -> the vendor whose virtualization extension the CPU has (Hygon's Dhyana is AMD-V:
# kvm_amd)
VENDOR_IDS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}
# the CPU flag that shows the extension -> vendor
VIRT_FLAG_VENDOR = {"vmx": "intel", "svm": "amd"}
KVM_MODULE = {"intel": "kvm_intel", "amd": "kvm_amd"}
HW_KVM_MODULES = tuple(KVM_MODULE.values())


def vendor_of(vendor_id: str) -> str:
    """intel / amd, or "" for a vendor kvmqa has no hardware-virtualization knowledge of."""
    return VENDOR_IDS.get(vendor_id, "")


def kvm_module_for(vendor_id: str) -> str:
    """The KVM module for this CPU vendor ("" when none is known)."""
    return KVM_MODULE.get(vendor_of(vendor_id), "")
