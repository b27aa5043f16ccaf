"""The lab's control socket: act on a running lab from outside the process that holds it.

Every lab serves it while it runs (detached supervisor, interactive CLI, `weblab run`), at
<run dir>/control.sock, root only. One JSON object per line each way (weblab.core.jsonline):

  {"op": "status"}                                       services (alive or not), processes
  {"op": "service", "host": H, "kind": K, "action": A}   A: start | stop | restart | reload | kill
  {"op": "spawn", "host": H, "argv": [...], "name": N}   a process in H the run records and removes;
                                                         its output goes to <run dir>/spawned/N.log
  {"op": "stop-process", "pid": P}                       a process spawned through this socket
  {"op": "link", "a": A, "b": B, "state": "up"|"down"}  both ends of the link between A and B
  {"op": "config", "host": H[, "kind": K]}              the config files of H's services (or of one)
  {"op": "edit-begin", "host": H, "kind": K[, "file": F]}  a draft of F (default: the main file) to
                                                         edit: a fresh copy, or the one a failed try kept
  {"op": "edit-abort", "host": H, "kind": K[, "file": F][, "keep": true]}  give the edit up
  {"op": "install-config", "host": H, "kind": K[, "file": F]}  the daemon's dry run on the draft; if it
                                                         passes, install it and reload the daemon
  {"op": "reload-config", "host": H, "kind": K}         dry run of the files as they are, then reload
  {"op": "lb-add", "server": S}                          a spare host joins every load balancer's pool:
                                                         firewall rules, its services, HAProxy runtime API
  {"op": "lb-remove", "server": S}                       drain it everywhere, delete it, stop its services

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
              "stop-process": self._stop_process, "link": self._link, "config": self._config,
              "edit-begin": self._edit_begin, "edit-abort": self._edit_abort,
              "install-config": self._install_config, "reload-config": self._reload_config,
              "lb-add": self._lb_add, "lb-remove": self._lb_remove}.get(op)
        if fn is None:
            return {"ok": False, "error": f"unknown op {op!r}; ops: status, service, spawn, stop-process, link, "
                                          f"config, edit-begin, edit-abort, install-config, reload-config, "
                                          f"lb-add, lb-remove"}
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
        try:
            getattr(svc, action)()
        finally:
            self._record(req["host"], req["kind"], svc)
        return {"pid": svc.pid}

    def _record(self, host: str, kind: str, svc: Any, edited: list[str] | None = None) -> None:
        """The run's state follows a service's new process and edited files (what status shows)."""
        state = getattr(self.lab, "state", None)  # a test double of the lab may keep none
        if state is None:
            return
        state.update_service(host, kind, getattr(svc, "ref", None))
        if edited:
            state.mark_edited(host, kind, edited)

    # --- configuration a person changes (hostapps.editing) --------------------------------------
    def _config(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import editing
        host = req["host"]
        if req.get("kind"):
            kinds = [req["kind"]]
        else:
            self.lab.handle(host)  # an unknown host is an error naming the hosts
            kinds = [k for h, k in self.lab.services() if h == host]
        return {"services": [editing.describe(self.lab.service(host, k)) for k in kinds]}

    def _edit_begin(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import editing
        return editing.begin(self.lab.service(req["host"], req["kind"]), req.get("file"))

    def _edit_abort(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import editing
        return editing.abort(self.lab.service(req["host"], req["kind"]), req.get("file"),
                             keep=bool(req.get("keep", True)))

    def _install_config(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import editing
        svc = self.lab.service(req["host"], req["kind"])
        try:
            done = editing.install(svc, req.get("file"))
        finally:
            self._record(req["host"], req["kind"], svc)
        self._record(req["host"], req["kind"], svc, [p.name for p in svc.edited_files()])
        return done

    def _reload_config(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import editing
        svc = self.lab.service(req["host"], req["kind"])
        try:
            done = editing.reload(svc)
        finally:
            self._record(req["host"], req["kind"], svc)
        self._record(req["host"], req["kind"], svc, done["edited"])
        return done

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

    def _lb_add(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import pool
        return pool.add(self.lab, str(req["server"]), on_service=self._record)

    def _lb_remove(self, req: dict[str, Any]) -> dict[str, Any]:
        from hostapps import pool
        return pool.remove(self.lab, str(req["server"]), on_service=self._record)

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
        raise WeblabError(f"lab {state.run_id} has no control socket (it is still starting, or it was "
                          f"started by an older weblab)")
    try:
        reply = jsonline.request(str(sock), obj, timeout=timeout)
    except jsonline.ControlError as e:
        raise WeblabError(f"the lab did not answer: {e}") from None
    if not reply.get("ok"):
        raise WeblabError(reply.get("error", "the lab refused"))
    return reply
