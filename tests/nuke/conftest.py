"""The plugin's Python package (plugins/nuke/daflow_nuke) is importable in these tests, as Nuke's
pluginAddPath makes it; `nuke` itself never is."""

from __future__ import annotations

import sys

from tests.conftest import REPO_ROOT

PLUGIN_DIR = REPO_ROOT / "plugins" / "nuke"
if str(PLUGIN_DIR) not in sys.path:
    sys.path.append(str(PLUGIN_DIR))
