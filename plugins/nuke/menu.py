"""DAFlow menu: Nodes > DAFlow with the DAFlow node and the three toolsets (GUI sessions only)."""

import daflow_nuke
import nuke

_menu = nuke.menu("Nodes").addMenu("DAFlow", tooltip="daflow-vfx optical flow")
# commands run in Nuke's __main__ namespace, so each one imports what it uses
_menu.addCommand("DAFlow", "import daflow_nuke; daflow_nuke.create_node()",
                 tooltip="Render motion vectors with daflow-vfx")
_menu.addSeparator()
for _name in daflow_nuke.TOOLSETS:
    _menu.addCommand(f"Toolsets/{_name}", f"import daflow_nuke; daflow_nuke.load_toolset({_name!r})")
