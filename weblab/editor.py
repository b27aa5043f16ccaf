"""The person's editor, found and run the way sudo and git do it.

Found as sudo users expect: SUDO_EDITOR, VISUAL, EDITOR, then the system's `editor` command (Debian's
alternative). Run as git runs it: the value is a shell command that may carry arguments
(EDITOR="code --wait", EDITOR="sed -i s/a/b/"), given the file as its last argument.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from weblab.core.errors import WeblabError

VARIABLES = ("SUDO_EDITOR", "VISUAL", "EDITOR")
FALLBACK = "editor"


def find(env: Mapping[str, str] | None = None, which=shutil.which) -> str:
    """The editor command: the first of SUDO_EDITOR, VISUAL, EDITOR set to something, else `editor`."""
    env = os.environ if env is None else env
    for name in VARIABLES:
        value = (env.get(name) or "").strip()
        if value:
            return value
    if which(FALLBACK):
        return FALLBACK
    raise WeblabError("no editor: set EDITOR (for example: sudo EDITOR=nano weblab edit ...), or install "
                      "one that provides the `editor` command")


def argv(editor: str, path: Path | str) -> list[str]:
    """The command line that opens path in editor, as git builds it (a shell runs the editor's value,
    so it may carry arguments and quotes; the file is passed as "$@", never spliced into the text)."""
    return ["sh", "-c", f'{editor} "$@"', editor, str(path)]


def run(path: Path | str, env: Mapping[str, str] | None = None) -> int:
    """Open path in the person's editor on this terminal and wait; the editor's exit status."""
    editor = find(env)
    try:
        return subprocess.run(argv(editor, path), env=None if env is None else dict(env)).returncode
    except KeyboardInterrupt:
        return 130
