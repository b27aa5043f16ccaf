"""Bad input, tried as a new user would: one clear line, a non-zero exit, nothing started, nothing left."""
from __future__ import annotations

import os

import pytest

from weblab import cli
from weblab.core import paths


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(paths, "LOCK_FILE", tmp_path / "weblab.lock")
    monkeypatch.setattr(paths, "KEPT_LOGS", tmp_path / "logs")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def _nothing_left(root) -> None:
    for folder in ("run", "logs"):
        where = root / folder
        assert not where.exists() or not any(where.iterdir()), f"{where} holds {list(where.iterdir())}"


@pytest.mark.parametrize("argv, words", [
    (["run", "spof", "--repeat", "0"], "must be greater than 0"),
    (["run", "spof", "--repeat", "two"], "is not a number"),
    (["up", "one-server", "--detach", "--timeout", "-1"], "must be greater than 0"),
    (["down", "--timeout", "0"], "must be greater than 0"),
    (["capture", "lb-back", "-w", "x.pcap", "--count", "-3"], "must be greater than 0"),
])
def test_numbers_out_of_range_are_usage_errors(roots, argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    _nothing_left(roots)


def test_report_into_a_missing_folder(roots, capsys):
    assert cli.main(["report", "--out", str(roots / "nonexistent" / "dir")]) == 2
    err = capsys.readouterr().err
    assert "no results folder at" in err and "Traceback" not in err and err.count("\n") == 1


def test_run_into_a_file(roots, capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert cli.main(["run", "spof", "--out", str(tmp_path / "afile")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    _nothing_left(roots)


def test_list_reports_a_broken_claim_module(monkeypatch, capsys):
    from experiments import registry

    def broken() -> list[str]:
        raise ImportError("No module named 'experiments.claims.nope'")
    monkeypatch.setattr(registry, "all_slugs", broken)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "the experiments could not be loaded" in err and "nope" in err


def test_a_bug_is_one_line_and_the_traceback_is_kept(roots, monkeypatch, capsys):
    def bug(args) -> int:
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(cli, "cmd_status", bug)
    assert cli.main(["status"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err and "Traceback" not in err
    kept = list((roots / "logs").glob("internal-error-*.txt"))
    assert len(kept) == 1 and "ZeroDivisionError" in kept[0].read_text()


def test_service_and_link_verbs_need_a_running_lab(roots, capsys):
    assert cli.main(["service", "server1", "nginx", "restart"]) == 2
    assert "no lab is running" in capsys.readouterr().err
    assert cli.main(["link", "server1", "s1", "down"]) == 2
    assert "no lab is running" in capsys.readouterr().err
    for action in ("add", "remove"):  # `weblab lb add|remove SERVER`: nothing to grow without a lab
        assert cli.main(["lb", action, "server3"]) == 2
        err = capsys.readouterr().err
        assert "no lab is running" in err and err.count("\n") == 1


def test_a_reader_that_leaves_early_is_no_error():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "weblab", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before weblab writes a line (as `weblab list | head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "internal error" not in err and "Traceback" not in err and "BrokenPipe" not in err, err
