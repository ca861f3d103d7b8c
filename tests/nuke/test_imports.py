"""`import daflow_vfx` never loads nuke; the plugin's Python imports without Nuke and fails clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PLUGIN_DIR = REPO_ROOT / "plugins" / "nuke"


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_daflow_vfx_never_imports_nuke_and_host_logic_is_stdlib_only() -> None:
    out = run_python(
        "import sys\n"
        "import daflow_vfx, daflow_vfx.hosts.nuke, daflow_vfx.farm.deadline\n"
        "from daflow_vfx.hosts.nuke import NodeSettings, render_args\n"
        "s = NodeSettings(input='p.####.exr', output_folder='/o', frame_range='1-3')\n"
        "render_args(s)\n"
        "print(sorted(m for m in ('nuke', 'numpy', 'torch', 'cv2', 'OpenImageIO') if m in sys.modules))\n"
    )
    # Nuke's Python imports these modules: no nuke (of course), and none of daflow-vfx's heavy dependencies
    assert out == "[]"


def test_plugin_imports_without_nuke_and_says_so_when_used() -> None:
    out = run_python(
        "import sys\n"
        f"sys.path.append({str(PLUGIN_DIR)!r})\n"
        "import daflow_nuke\n"
        "assert 'nuke' not in sys.modules and daflow_nuke.nuke is None\n"
        "print(daflow_nuke.toolset_path('DAFlow_Retime').is_file())\n"
        "for call in (daflow_nuke.create_node, daflow_nuke.render_vectors, daflow_nuke.submit_to_farm,\n"
        "             daflow_nuke.load_stabilize, lambda: daflow_nuke.load_toolset('DAFlow_Retime')):\n"
        "    try:\n"
        "        call()\n"
        "    except daflow_nuke.NukeUnavailableError as exc:\n"
        "        print(type(exc).__mro__[1].__name__, str(exc))\n"
    )
    lines = out.splitlines()
    assert lines[0] == "True"
    assert len(lines) == 6
    for line in lines[1:]:
        assert line.startswith("RuntimeError daflow_nuke: this function runs inside Nuke only")


def test_toolset_path_rejects_unknown_names() -> None:
    if str(PLUGIN_DIR) not in sys.path:
        sys.path.append(str(PLUGIN_DIR))
    import daflow_nuke

    with pytest.raises(ValueError, match="unknown toolset"):
        daflow_nuke.toolset_path("Nope")
