"""Fault-suite hook, loaded only by the commands the fault tests start (they put this folder first on
PYTHONPATH, where Python looks for ``sitecustomize`` at start-up); it does nothing unless asked.

``DAFLOW_FAULT_SLOW="os.replace=0.15,daflow_vfx.io.video._quantise=0.1"`` makes each named function
sleep that many seconds before it runs, so a signal sent at frame k lands while frame k + 1 is being
written (a finished temp file waiting for its rename, or a video half encoded) instead of after a
tiny render has already finished. Nothing else about the installed command changes.
"""

from __future__ import annotations

import functools
import importlib
import os
import time


def _slow_down(spec: str) -> None:
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, seconds = item.split("=")
        module_name, attribute = target.rsplit(".", 1)
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)

        @functools.wraps(original)
        def slow(*args, _original=original, _delay=float(seconds), **kwargs):
            time.sleep(_delay)
            return _original(*args, **kwargs)

        setattr(module, attribute, slow)


if os.environ.get("DAFLOW_FAULT_SLOW"):
    _slow_down(os.environ["DAFLOW_FAULT_SLOW"])
