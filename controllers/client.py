"""Client of the controller's control socket (used by the weblab CLI): weblab's JSON-line protocol."""
from __future__ import annotations

from weblab.core.jsonline import ControlError, request

__all__ = ["ControlError", "request"]
