"""Every exercise is honest: on its scenario's untouched lab `weblab check` fails, after its reference
solution (run as a student would type it, through a shell) it passes. One lab per exercise."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from exercises import model
from tests.integration.conftest import leftovers, running_state, weblab
from weblab.core import paths

EXERCISES = model.all_exercises()


@pytest.fixture(scope="module")
def student_env(tmp_path_factory):
    """The environment a solution's commands run in: `weblab` is this checkout's CLI, and the editor
    is whatever the step sets in EDITOR (no VISUAL/SUDO_EDITOR of the caller's shadowing it)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "weblab"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(paths.REPO))} exec {shlex.quote(sys.executable)} "
                    f"-m weblab \"$@\"\n")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_EDITOR", "VISUAL", "EDITOR")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@pytest.mark.parametrize("ex", EXERCISES, ids=[e.name for e in EXERCISES])
def test_check_fails_on_the_untouched_lab_and_passes_after_the_solution(ex, student_env, tmp_path):
    up = ["up", ex.design, "--detach", *(["--scenario", ex.scenario] if ex.scenario else [])]
    for key, value in ex.params.items():
        up += ["--param", f"{key}={value}"]
    weblab(*up)
    state = running_state()
    try:
        before = weblab("check", ex.name, check=False, timeout=300)
        assert before.returncode == 1, f"untouched lab: exit {before.returncode}\n{before.stdout}\n{before.stderr}"
        assert "FAIL" in before.stdout and "hint:" in before.stdout
        for step in ex.solution:
            res = subprocess.run(["sh", "-c", step], env=student_env, capture_output=True, text=True,
                                 timeout=180, cwd=tmp_path)
            assert res.returncode == 0, f"solution step {step!r}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        junit, table = tmp_path / "junit.xml", tmp_path / "checks.csv"
        after = weblab("check", ex.name, "--junit", str(junit), "--csv", str(table), check=False, timeout=300)
        assert after.returncode == 0, f"after the solution: exit {after.returncode}\n{after.stdout}\n{after.stderr}"
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite.get("tests") == str(len(ex.checks)) and suite.get("failures") == "0"
        rows = table.read_text().splitlines()
        assert len(rows) == 1 + len(ex.checks) and all(",pass," in r for r in rows[1:])
    finally:
        weblab("down", check=False)
        left = leftovers(state)
        assert not left, f"left behind after `weblab down`: {left}"
