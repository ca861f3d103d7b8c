"""Host-allocator tuning for the command-line process (glibc ``mallopt``), never applied on import.

On the CPU, much of a large frame's time went to the kernel, not to arithmetic: glibc serves every
allocation above its mmap threshold (at most 32 MiB, however it is set) with a fresh ``mmap``, and
``free`` hands it straight back. A 1080p feature map at 1/2 resolution is ~200 MB, so each new
intermediate tensor was page-faulted and zeroed by the kernel again: ``x * x`` on a
[3, 32, 544, 960] float32 tensor took 145 ms, against 24 ms into a preallocated output (2 cores).
With mmap off (``M_MMAP_MAX = 0``) and a high trim threshold, freed blocks stay in the heap and are
reused: one 1088x1920 window went from 94.6 s to 67.2 s (docs/benchmarks.md has the clean figures).

This is the same fix as PyTorch's CPU launcher (``torch.backends.xeon.run_cpu``), which preloads
jemalloc or tcmalloc; ``mallopt`` needs no extra library. The cost is that the process keeps its peak
heap until it exits, which suits a render or training process. It is process-wide, so only
applications call it (the ``daflow-vfx`` command and its benchmark workers), never the library on
import or the Nuke and Blender adapters, whose hosts own their allocator.

Set ``DAFLOW_VFX_MALLOC=system`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

__all__ = ["ENV_VAR", "tune_host_allocator"]

log = logging.getLogger(__name__)

ENV_VAR = "DAFLOW_VFX_MALLOC"

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the top of the heap above this is returned to the system (an int option: 1 GiB).
_TRIM_THRESHOLD = 1 << 30


def tune_host_allocator() -> bool:
    """Keep large freed blocks in glibc's heap for reuse; True if the settings were applied.

    A no-op (False) off Linux/glibc, or when ``DAFLOW_VFX_MALLOC=system``.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() == "system":
        log.debug("%s=system: host allocator left alone", ENV_VAR)
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    log.debug("glibc malloc: mmap off, trim threshold %d bytes (%s)", _TRIM_THRESHOLD,
              "ok" if ok else "refused")
    return ok
