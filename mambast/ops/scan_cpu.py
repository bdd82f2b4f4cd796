"""Native CPU selective scan (placeholder until the kernel lands: reports unavailable)."""

from __future__ import annotations


def native_available() -> bool:
    return False


def selective_scan_cpu(*args):
    raise RuntimeError("the native CPU selective scan is not built")
