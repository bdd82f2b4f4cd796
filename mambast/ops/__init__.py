"""Operators: the selective scan (several backends, one contract) and the 4-direction cross scan/merge."""

from .backends import BACKENDS, ScanBackend, get_backend
from .cross_scan import cross_merge, cross_scan
from .scan_ref import selective_scan_ref
from .selective_scan import resolve_backend, selective_scan, selective_scan_lowrank

__all__ = ["selective_scan", "selective_scan_lowrank", "selective_scan_ref", "resolve_backend", "cross_scan",
           "cross_merge", "BACKENDS", "ScanBackend", "get_backend"]
