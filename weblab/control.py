"""The lab's control socket: act on a running lab from outside the process that holds it.

Every lab serves it while it runs (detached supervisor, interactive CLI, `weblab run`), at
<run dir>/control.sock, root only. One JSON object per line each way (weblab.core.jsonline):

  {"op": "status"}                                       services (alive or not), processes
  {"op": "service", "host": H, "kind": K, "action": A}   A: start | stop | restart | reload | kill
  {"op": "spawn", "host": H, "argv": [...], "name": N}   a process in H the run records and removes;
                                                         its output goes to <run dir>/spawned/N.log
  {"op": "stop-process", "pid": P}                       a process spawned through this socket
  {"op": "link", "a": A, "b": B, "state": "up"|"down"}  both ends of the link between A and B

Every reply has "ok", and "error" when ok is false. The operations are the Lab's own methods, the
ones `weblab run` calls in-process, so both paths do the same thing.
"""
from __future__ import annotations

import re
import socket
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weblab.core import jsonline
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState

if TYPE_CHECKING:
    from weblab.lab import Lab

SERVICE_ACTIONS = ("start", "stop", "restart", "reload", "kill")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ControlServer:
    """Serves one lab's control socket in threads of the process that holds the lab."""

    def __init__(self, lab: "Lab", path: Path):
        self.lab, self.path = lab, path
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()  # one operation on the lab at a time
        self.spawned: dict[int, tuple[ProcRef, subprocess.Popen, Path]] = {}

    def start(self) -> "ControlServer":
        self.sock = jsonline.bind(str(self.path), mode=0o600)
        threading.Thread(target=self._accept, name="weblab-control", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting; the socket file goes (processes spawned are the lab's to stop)."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while self.sock is not None:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=jsonline.serve_client, args=(conn, self.handle), daemon=True).start()

    # --- the operations -------------------------------------------------------------------------
    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        fn = {"status": self._status, "service": self._service, "spawn": self._spawn,
              "stop-process": self._stop_process, "link": self._link}.get(op)
        if fn is None:
            return {"ok": False, "error": f"unknown op {op!r}; ops: status, service, spawn, stop-process, link"}
        try:
            with self.lock:
                return {"ok": True, **fn(req)}
        except WeblabError as e:
            return {"ok": False, "error": str(e)}
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": f"bad request {req!r}: {e}"}

    def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        lab = self.lab
        services = [{"host": h, "kind": k, "alive": bool(lab.service(h, k).pid)} for h, k in lab.services()]
        spawned = [{"pid": ref.pid, "name": ref.name, "host": ref.host, "alive": ref.alive(), "log": str(log)}
                   for ref, _, log in self.spawned.values()]
        return {"run_id": lab.run_id, "design": lab.design, "services": services, "spawned": spawned}

    def _service(self, req: dict[str, Any]) -> dict[str, Any]:
        action = req["action"]
        if action not in SERVICE_ACTIONS:
            raise WeblabError(f"action {action!r}: use one of {', '.join(SERVICE_ACTIONS)}")
        svc = self.lab.service(req["host"], req["kind"])
        getattr(svc, action)()
        return {"pid": svc.pid}

    def _spawn(self, req: dict[str, Any]) -> dict[str, Any]:
        host, argv, name = req["host"], req["argv"], req.get("name") or "process"
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise WeblabError("argv must be a non-empty list of strings")
        if not _NAME.match(name):
            raise WeblabError(f"name {name!r}: 1-64 letters, digits, '_.-'")
        log = self.lab.run_dir / "spawned" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            p = self.lab.popen(host, argv, stdout=out, stderr=subprocess.STDOUT)
        ref = ProcRef.of(name, p.pid, host=host)
        self.spawned[p.pid] = (ref, p, log)
        return {"pid": p.pid, "log": str(log)}

    def _stop_process(self, req: dict[str, Any]) -> dict[str, Any]:
        pid = int(req["pid"])
        if pid not in self.spawned:
            raise WeblabError(f"process {pid} was not started through this lab's control socket")
        ref, p, _ = self.spawned[pid]
        ref.stop(timeout=5)
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        return {"pid": pid, "alive": ref.alive()}

    def _link(self, req: dict[str, Any]) -> dict[str, Any]:
        state = req["state"]
        if state not in ("up", "down"):
            raise WeblabError(f"link state {state!r}: use up or down")
        (self.lab.link_up if state == "up" else self.lab.link_down)(req["a"], req["b"])
        return {"a": req["a"], "b": req["b"], "state": state}


def request(state: RunState, obj: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One request to a running lab's control socket; a refusal or no answer is a WeblabError."""
    sock = state.control_socket
    if sock is None or not sock.exists():
        raise WeblabError(f"run {state.run_id} has no control socket (it is still starting, or it was "
                          f"started by an older weblab)")
    try:
        reply = jsonline.request(str(sock), obj, timeout=timeout)
    except jsonline.ControlError as e:
        raise WeblabError(f"the lab did not answer: {e}") from None
    if not reply.get("ok"):
        raise WeblabError(reply.get("error", "the lab refused"))
    return reply
