"""The layers import in one direction only (docs/layers.md), function-level imports included."""
from __future__ import annotations

from tests import layers


def test_no_import_goes_against_the_direction():
    bad = layers.violations(layers.edges())
    assert not bad, "imports against the layer direction (see docs/layers.md):\n" + "\n".join(map(str, bad))


def test_no_module_cycles():
    loops = layers.cycles(layers.edges())
    assert not loops, "import cycles: " + "; ".join(" <-> ".join(c) for c in loops)


def test_nothing_imports_the_cli():
    users = [e for e in layers.edges() if e.dst == "weblab.cli" and e.src != "weblab.__main__"]
    assert not users, "\n".join(map(str, users))


def test_the_analysis_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "hostapps"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from weblab import lab\n")
    (pkg / "b.py").write_text("from . import a\n")
    (tmp_path / "weblab").mkdir()
    (tmp_path / "weblab" / "__init__.py").write_text("")
    (tmp_path / "weblab" / "lab.py").write_text("import hostapps.b\n")
    found = layers.edges(tmp_path)
    by = {(e.src, e.dst): e for e in found}
    assert by[("hostapps.a", "weblab.lab")].in_function
    assert ("hostapps.b", "hostapps.a") in by
    assert [str(e.src) for e in layers.violations(found)] == ["hostapps.a"]
    assert layers.cycles(found) == [["hostapps.a", "hostapps.b", "weblab.lab"]]


def test_layer_names():
    assert layers.layer_of("weblab.core.proc") == "core"
    assert layers.layer_of("weblab.cli") == "cli"
    assert layers.layer_of("weblab.lab") == "lab"
    assert layers.layer_of("weblab.ui.server") == "ui"
    assert layers.layer_of("experiments.claims.spof") == "experiments"


def test_docs_show_the_current_graph():
    from pathlib import Path
    doc = (Path(layers.REPO) / "docs" / "layers.md").read_text()
    assert layers.markdown(layers.edges()) in doc, "docs/layers.md is stale: regenerate its table with " \
        "python -m tests.layers --markdown"
