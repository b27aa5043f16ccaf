"""The packaging stays on current conventions and agrees with itself: pyproject.toml (PEP 621/660),
the setup.py shim, the pins, and what install.sh installs."""
from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

from weblab import doctor

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    out = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            out[re.sub(r"[-_.]+", "-", pkg).lower()] = version
    return out


def test_build_backend_is_setuptools_with_pep_660():
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    assert "setuptools>=64" in build["requires"]  # the first release with PEP 660 editable installs
    pinned = tuple(int(p) for p in _pins("constraints.txt")["setuptools"].split(".")[:2])
    assert pinned >= (64, 0), "install.sh installs this setuptools into the venv before `pip install -e .`"


def test_setup_py_is_a_thin_shim():
    tree = ast.parse((REPO / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords, "metadata belongs in pyproject.toml"


def test_metadata_console_script_and_python():
    project = PYPROJECT["project"]
    assert project["name"] == "weblab"
    assert project["scripts"] == {"weblab": "weblab.cli:main"}
    from weblab import cli
    assert callable(cli.main)
    assert project["requires-python"] == ">=" + ".".join(map(str, doctor.PYTHON_MIN))


def test_every_top_level_package_is_packaged():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
    assert packages, "no packages found"
    for name in packages:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in include), f"{name}/ is not in packages.find"


def test_package_data_globs_match_files():
    for package, globs in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            assert list((REPO / package).glob(pattern)), f"{package}/{pattern} matches nothing"


def test_direct_dependencies_are_pinned_alike():
    direct, full = _pins("requirements.txt"), _pins("constraints.txt")
    for pkg, version in direct.items():
        assert full.get(pkg) == version, f"{pkg}: requirements.txt {version}, constraints.txt {full.get(pkg)}"
    declared = {re.sub(r"[-_.]+", "-", d).lower() for d in PYPROJECT["project"]["dependencies"]}
    assert declared <= set(direct), f"pyproject dependencies not pinned: {declared - set(direct)}"


def test_install_stamp_covers_the_packaging_files():
    script = (REPO / "install.sh").read_text()
    stamp = next(line for line in script.splitlines() if "sha256sum" in line)
    for name in ("requirements.txt", "constraints.txt", "pyproject.toml", "setup.py"):
        assert name in stamp, f"install.sh's stamp ignores {name}: a change there would not reinstall"
    assert "--no-build-isolation -e ." in script and "-c constraints.txt setuptools" in script
