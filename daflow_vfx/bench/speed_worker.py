"""The worker protocol of ``bench speed``: each measurement in a fresh Python process.

Peak memory is only exact in a process that has run nothing else (see
:class:`~daflow_vfx.bench.speed_cases.MemoryProbe`), so by default :func:`measure` starts
``python -m daflow_vfx.bench.speed_worker``, sends the case as one JSON object on stdin and reads one
marked JSON line back from stdout. A case that raises, or a worker that dies (out of memory, a signal),
becomes a row that says why, never a crash of the whole benchmark.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from ..errors import DaflowError
from .speed_cases import CaseSpec, ReuseSpec, measure_case, measure_reuse
from .speed_render import RenderSpec, measure_render
from .torchvision_raft import one_line

log = logging.getLogger(__name__)

# The worker marks its one result line so stray library output on stdout cannot confuse it.
_RESULT_MARK = "DAFLOW_SPEED_RESULT "
# What names a measurement in a row that failed, by the payload's kind.
_KEYS = {"case": ("model", "width", "height"), "reuse": ("model", "frames", "width", "height"),
         "render": ("model", "width", "height")}


def _worker(payload: dict[str, Any]) -> dict[str, Any]:
    kind = payload.pop("kind")
    try:
        if kind == "case":
            return asdict(measure_case(CaseSpec(**payload)))
        if kind == "render":
            return asdict(measure_render(RenderSpec(**payload)))
        return asdict(measure_reuse(ReuseSpec(**payload)))
    except DaflowError as exc:
        status, reason = "unavailable", " ".join(str(exc).split())
    except Exception as exc:  # a benchmark row, not a crash: the other rows still run
        log.debug("%s failed", payload, exc_info=True)
        status, reason = "failed", one_line(exc)
    return {**{k: payload[k] for k in _KEYS[kind]}, "status": status, "reason": reason}


def _run_isolated(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its result dict."""
    proc = subprocess.run(
        [sys.executable, "-m", "daflow_vfx.bench.speed_worker"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK) :])
    if proc.returncode < 0:
        why = f"worker killed by signal {-proc.returncode}"
        if proc.returncode == -9:
            why += " (likely out of memory)"
    else:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = f"worker exited with code {proc.returncode}" + (f": {last[-1].strip()}" if last else "")
    return {**{k: payload[k] for k in _KEYS[payload["kind"]]}, "status": "failed", "reason": why}


def measure(payload: dict[str, Any], *, isolate: bool) -> dict[str, Any]:
    """One measurement (``{"kind": "case" | "reuse" | "render", **spec}``) as a result dict: in a fresh
    process when ``isolate``, else in this one."""
    if isolate:
        return _run_isolated(dict(payload))
    return _worker(dict(payload))


def _worker_main() -> int:
    from ..hostalloc import tune_host_allocator

    # The worker times what the `daflow-vfx` command runs, so it sets the host allocator the same way.
    tune_host_allocator()
    payload = json.loads(sys.stdin.read())
    result = _worker(payload)
    sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
