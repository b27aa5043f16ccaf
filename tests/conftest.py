"""Shared test plumbing: the root/binary requirement of integration tests, said in skip reasons."""
from __future__ import annotations

import os

import pytest



def pytest_collection_modifyitems(config, items):
    """Integration tests need root and the lab's programs; say exactly what is missing."""
    from weblab import programs  # the one declaration preflight and doctor read too
    missing = sorted(programs.missing(programs.for_every_design()))
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root (run: sudo make test)")
    if missing:
        reasons.append(f"needs {', '.join(missing)} (run: sudo make install)")
    if not reasons:
        return
    skip = pytest.mark.skip(reason="; ".join(reasons))
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(skip)
