"""kvmqa: conformance and install test suite for KVM virtualization hosts."""

__version__ = "0.1.0"
