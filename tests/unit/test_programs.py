"""`weblab doctor --design X` and `weblab up X` read one declaration of the programs X needs."""
from __future__ import annotations

import shutil

import pytest

from topologies import DESIGNS
from weblab import doctor, programs
from weblab.core.errors import WeblabError


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_doctor_and_preflight_agree_on_every_program(design, monkeypatch):
    from weblab import lab
    needed = programs.for_design(DESIGNS[design])
    assert set(programs.RUNTIME) <= set(needed)
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab.clean, "crashed_runs", lambda: [])
    monkeypatch.setattr(doctor, "check_datapath", lambda: doctor.Check("switch datapath", True, "x"))
    monkeypatch.setattr(doctor, "check_qdiscs", lambda: [])
    monkeypatch.setattr(doctor, "check_import", lambda m: doctor.Check(f"import {m}", True, "x"))
    real_which = shutil.which
    for program in sorted(needed):
        monkeypatch.setattr(shutil, "which", lambda name, path=None, p=program: None if name == p else real_which(name, path=path))
        failed = [c for c in doctor.checks(design) if c.status == "FAIL"]
        assert [c.name for c in failed] == [f"program {program}"], f"doctor --design {design} without {program}"
        with pytest.raises(WeblabError, match=f"missing programs: {program} "):
            lab.preflight(DESIGNS[design], {})
    monkeypatch.setattr(shutil, "which", real_which)


def test_doctor_checks_what_secured_needs_beyond_the_old_list():
    needed = programs.for_design(DESIGNS["secured"])
    for program in ("prometheus", "promtool", "prometheus-node-exporter", "prometheus-nginx-exporter",
                    "prometheus-mysqld-exporter", "mariadb-admin", "openssl"):
        assert program in needed
    assert "nsupdate" in programs.for_design(DESIGNS["scaled"])
    assert "openssl" not in programs.for_design(DESIGNS["one-server"])


def test_every_design_check_covers_each_design():
    every = programs.for_every_design()
    for cls in DESIGNS.values():
        assert set(programs.for_design(cls)) <= set(every)
    assert {"tcpdump", "wrk"} <= set(every)
