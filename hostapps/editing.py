"""Changing a running daemon's configuration as an operator does: edit a copy (a draft), run the
daemon's own dry run on it, install it only if that passes, then reload the daemon the way it is
reloaded in production. A rejected draft is kept for the next try and the running file is untouched.

Every file stays in the service's run directory (drafts in <service dir>/drafts/), so it goes with
the lab. The functions take a hostapps Service; the lab's control socket calls them.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weblab.core.errors import WeblabError

if TYPE_CHECKING:
    from hostapps.base import Service

DRAFTS = "drafts"
MAX_LINES = 20  # of a daemon's answer, in an error message


class ConfigRejected(WeblabError):
    """The daemon's own dry run refused a configuration; the message holds what it said."""


def config_file(svc: "Service", name: str | None = None) -> Path:
    """The config file `name` of svc (default: its main one), or an error naming those it has."""
    files = svc.config_files()
    if not files:
        raise WeblabError(f"{svc.name} has no configuration file to edit (it is configured by the "
                          f"lab's options only)")
    if not name:
        return files[0]
    for path in files:
        if path.name == name:
            return path
    raise WeblabError(f"{svc.name} has no config file {name!r}; its files: "
                      f"{', '.join(p.name for p in files)}")


def draft_of(svc: "Service", path: Path) -> Path:
    """Where the draft of one of svc's config files lives."""
    return svc.dir / DRAFTS / path.name


def describe(svc: "Service") -> dict[str, Any]:
    """svc's config files: path, whether it was edited, and a draft kept from a rejected try."""
    edited = set(svc.edited_files())
    return {"service": svc.name, "kind": svc.kind, "effect": svc.reload_effect(),
            "files": [{"name": p.name, "path": str(p), "edited": p in edited,
                       "draft": str(draft_of(svc, p)) if draft_of(svc, p).exists() else ""}
                      for p in svc.config_files()]}


def begin(svc: "Service", name: str | None = None) -> dict[str, Any]:
    """The draft to edit: the one kept from a rejected try, else a fresh copy of the running file."""
    path = config_file(svc, name)
    if not svc.pid:
        raise WeblabError(f"{svc.name} is not running: start it first (weblab service {svc.host.name} "
                          f"{svc.kind} start)")
    svc.edit_begins(path)
    draft = draft_of(svc, path)
    kept = draft.exists()
    if not kept:
        draft.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, draft)
    return {"path": str(path), "draft": str(draft), "kept": kept}


def abort(svc: "Service", name: str | None = None, keep: bool = True) -> dict[str, Any]:
    """Give an edit up: nothing is installed; the draft stays (keep) or goes."""
    path = config_file(svc, name)
    draft = draft_of(svc, path)
    svc.edit_ends(path)
    if not keep:
        draft.unlink(missing_ok=True)
    return {"path": str(path), "draft": str(draft) if draft.exists() else ""}


def check(svc: "Service", path: Path, text_at: Path) -> list[str]:
    """Run the daemon's dry runs of `path` holding the text of `text_at`; the commands run, or
    ConfigRejected with what the daemon said."""
    done = []
    for argv in svc.check_file_argv(path, text_at):
        try:
            res = svc.host.run(argv, timeout=30)
        except subprocess.TimeoutExpired:
            raise ConfigRejected(f"`{' '.join(argv)}` did not finish within 30 s") from None
        if res.returncode != 0:
            raise ConfigRejected(f"`{' '.join(argv)}` refused it (exit {res.returncode}):\n"
                                 f"{said(res.stdout + res.stderr)}")
        done.append(" ".join(argv))
    return done


def said(output: str) -> str:
    """The lines of a dry run's output that say what is wrong (the daemon's error lines if it marks
    them, like MariaDB's [ERROR] or nginx's [emerg], else all of it; bounded)."""
    lines = [l.rstrip() for l in output.splitlines() if l.strip()]
    marked = [l for l in lines if any(m in l for m in ("[ERROR]", "[emerg]", "[crit]", "[ALERT]"))]
    picked = marked or lines
    text = "\n".join("  " + l.strip() for l in picked[:MAX_LINES])
    return text + (f"\n  ... ({len(picked) - MAX_LINES} more lines)" if len(picked) > MAX_LINES else "")


def install(svc: "Service", name: str | None = None) -> dict[str, Any]:
    """Check the draft with the daemon's dry run; if it passes, put it in place and make the daemon
    load it (apply_config). If the check fails, or the daemon does not take it, the running
    configuration stays (or is put back) and the draft is kept."""
    path = config_file(svc, name)
    draft = draft_of(svc, path)
    if not draft.exists():
        raise WeblabError(f"no draft of {path.name} for {svc.name}: start with weblab edit "
                          f"{svc.host.name} {svc.kind}")
    where = f"your draft is kept in {draft} for the next try (weblab edit {svc.host.name} {svc.kind})"
    try:
        try:
            checked = check(svc, path, draft)
        except ConfigRejected as e:
            raise ConfigRejected(f"{svc.name}: {e}\nthe running {path.name} is unchanged; {where}") from None
        previous = path.read_bytes()
        write_over(path, draft.read_bytes())
        try:
            svc.apply_config()
            if not svc.pid:
                raise WeblabError(f"{svc.name} exited after loading it (log: {svc.log})")
        except WeblabError as e:
            write_over(path, previous)
            restore(svc)
            raise WeblabError(f"{svc.name} did not take the new {path.name}: {e}\nthe previous "
                              f"{path.name} is back in place and running; {where}") from None
    finally:
        svc.edit_ends(path)
    draft.unlink()
    return {"path": str(path), "checked": checked, "effect": svc.reload_effect()}


def restore(svc: "Service") -> None:
    """After a failed apply with the previous files back in place: the daemon running them again."""
    if svc.pid:
        svc.apply_config()
    else:
        svc.start()


def reload(svc: "Service") -> dict[str, Any]:
    """After an edit made by other means: the daemon's dry runs on the files as they are, then the
    production reload. Nothing is rendered over an edited file."""
    if not svc.pid:
        raise WeblabError(f"{svc.name} is not running: start it first")
    checked = []
    for path in svc.config_files():
        try:
            checked += check(svc, path, path)
        except ConfigRejected as e:
            raise ConfigRejected(f"{svc.name}: {e}\nnothing was reloaded: {svc.kind} still runs the "
                                 f"configuration it loaded last") from None
    svc.reload()
    return {"checked": checked, "effect": svc.reload_effect(),
            "edited": [p.name for p in svc.edited_files()]}


def write_over(path: Path, data: bytes) -> None:
    """Replace a file's content atomically, keeping its mode and owner (daemons read it as before)."""
    st = path.stat()
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
