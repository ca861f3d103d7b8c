"""The command's host-allocator tuning: large blocks stop being mmapped, and only when asked for."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)

# Allocates a 64 MiB block and prints how many more blocks glibc holds as separate mmaps while it
# lives (mallinfo2().hblks; imports may already hold some), then the tuning's return value.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    applied = None
    if sys.argv[1] == "tune":
        from daflow_vfx.hostalloc import tune_host_allocator
        applied = tune_host_allocator()
    else:
        import daflow_vfx  # importing the package must not touch the allocator
    before = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)
    print(libc.mallinfo2().hblks - before, applied)
    libc.free(block)
    """
)


def _probe(mode: str, **env: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), out[1]


def test_tuning_keeps_large_blocks_in_the_heap() -> None:
    assert _probe("tune") == (0, "True")


def test_import_leaves_the_allocator_alone() -> None:
    assert _probe("import") == (1, "None")


def test_env_var_opts_out() -> None:
    assert _probe("tune", DAFLOW_VFX_MALLOC="system") == (1, "False")


def test_command_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import daflow_vfx.cli as cli

    calls: list[bool] = []
    monkeypatch.setattr(cli, "tune_host_allocator", lambda: calls.append(True) or True)
    result = CliRunner().invoke(cli.main, ["models"])
    assert result.exit_code == 0, result.output
    assert calls == [True]
