"""The DAFlow node's Python: what its "Render Vectors" and "Submit to Farm" buttons run.

Thin on purpose. Every decision (knobs -> command line, frame ranges, farm jobs, progress lines)
is made by :mod:`daflow_vfx.hosts.nuke` and `daflow-vfx submit`, which are unit-tested without Nuke;
this module only reads knobs, writes the input through a Write when it is not already a file sequence,
runs ``daflow-vfx render`` or ``daflow-vfx submit`` as a separate process (so Nuke's Python never
imports torch or a farm's library) and wires the rendered EXRs back into the node's internal Read.

It imports without Nuke (tests, farm nodes); a function that needs Nuke then raises
:class:`NukeUnavailableError` with a one-line message.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

try:  # Nuke's own module; absent everywhere else
    import nuke  # type: ignore[import-not-found]
except ImportError:
    nuke = None

log = logging.getLogger("daflow_nuke")

__all__ = [
    "KNOBS",
    "NukeUnavailableError",
    "create_node",
    "knob_values",
    "load_stabilize",
    "load_toolset",
    "propagate",
    "render_vectors",
    "submit_to_farm",
    "toolset_path",
]

# The gizmo's user knobs read by the buttons (see gizmos/DAFlow.gizmo).
KNOBS = ("model", "device", "frame_range", "layout", "input_colorspace", "vector_detail", "output_folder",
         "output_name", "executable", "chunk_size", "skip_existing", "farm")
PLUGIN_DIR = Path(__file__).resolve().parent.parent
TOOLSETS = ("DAFlow_VectorBlur", "DAFlow_Retime", "DAFlow_Stabilize", "DAFlow_Propagate")


class NukeUnavailableError(RuntimeError):
    """A function that drives Nuke was called where the ``nuke`` module does not exist."""


def _nuke() -> Any:
    if nuke is None:
        raise NukeUnavailableError("daflow_nuke: this function runs inside Nuke only (no `nuke` module "
                                   "here); outside Nuke use the daflow-vfx command line")
    return nuke


def _hosts() -> Any:
    """:mod:`daflow_vfx.hosts.nuke`, made importable when Nuke's Python does not have daflow_vfx.

    Only daflow_vfx's own pure-Python modules are needed (no numpy, no torch). Its folder is found
    next to this plugin (``site-packages/daflow_vfx/plugins_nuke`` or the checkout's
    ``plugins/nuke``) or in ``$DAFLOW_VFX_PYTHONPATH``; it is appended to ``sys.path`` so Nuke's own
    packages always win.
    """
    try:
        import daflow_vfx.hosts.nuke as hosts
    except ImportError:
        extra = os.environ.get("DAFLOW_VFX_PYTHONPATH") or str(PLUGIN_DIR.parent.parent)
        for entry in extra.split(os.pathsep):
            if entry and entry not in sys.path:
                sys.path.append(entry)
        import daflow_vfx.hosts.nuke as hosts
    return hosts


def toolset_path(name: str) -> Path:
    """The ``.nk`` file of a toolset shipped with the plugin."""
    if name not in TOOLSETS:
        raise ValueError(f"unknown toolset {name!r}; choose one of {', '.join(TOOLSETS)}")
    return PLUGIN_DIR / "toolsets" / f"{name}.nk"


def knob_values(node: Any) -> dict[str, Any]:
    """``{knob: value}`` for the DAFlow knobs the node has (file knobs unevaluated: ``####`` kept)."""
    values: dict[str, Any] = {}
    for name in KNOBS:
        knob = node.knob(name)
        if knob is not None:
            values[name] = knob.value()
    return values


# --------------------------------------------------------------------------------------------------
# menu commands


def create_node() -> Any:
    """Nodes > DAFlow > DAFlow."""
    return _nuke().createNode("DAFlow")


def load_toolset(name: str) -> None:
    """Nodes > DAFlow > a toolset: pasted at the selection, as Nuke's own toolsets are."""
    _nuke().loadToolset(str(toolset_path(name)))


# --------------------------------------------------------------------------------------------------
# the buttons


def _message(text: str) -> None:
    n = _nuke()
    if n.GUI:
        n.message(text)
    else:
        log.warning("%s", text)


def _settings(node: Any) -> Any:
    """Read the knobs, find (or write) the plate on disk, and return NodeSettings."""
    n = _nuke()
    hosts = _hosts()
    from daflow_vfx.errors import UsageError

    upstream = node.input(0)
    if upstream is None:
        raise UsageError(f"{node.name()}: nothing is connected to the input; connect a plate")
    first, last = int(upstream.firstFrame()), int(upstream.lastFrame())
    knobs = knob_values(node)
    draft = hosts.NodeSettings.from_knobs(knobs, input="pending", node_name=node.name(), input_first=first,
                                          input_last=last)
    frames = hosts.frame_list(draft)
    hosts.output_pattern(draft)  # a bad output folder/name fails here, before anything is written
    # the render reads one frame either side of the range for the backward/forward neighbours
    needed = list(range(max(first, frames[0] - 1), min(last, frames[-1] + 1) + 1))
    read_file = upstream["file"].value() if upstream.Class() == "Read" and upstream.knob("file") else None
    plate = hosts.source_plate(read_file, needed)
    if plate is not None and knobs.get("input_colorspace", "auto") == "auto" and upstream.knob("colorspace"):
        # the plate is the Read's own files: read them as the Read does
        knobs["input_colorspace"] = hosts.read_colorspace(upstream["colorspace"].value()) or "auto"
    if plate is None:
        plate = hosts.plate_cache_pattern(draft.output_folder, node.name())
        os.makedirs(os.path.dirname(plate), exist_ok=True)
        with n.root():
            write = n.nodes.Write(file=plate, file_type="exr", channels="rgb")
        try:
            write.setInput(0, upstream)
            n.execute(write, needed[0], needed[-1])  # blocks with Nuke's own progress bar
        finally:
            n.delete(write)
        if knobs.get("input_colorspace", "auto") == "auto":
            # the Write stores Nuke's working space (linear, or e.g. ACEScg under an ACES config)
            root = n.root()
            working = root["workingSpaceLUT"].value() if root.knob("workingSpaceLUT") else None
            knobs["input_colorspace"] = hosts.read_colorspace(working) or "linear"
    return hosts.NodeSettings.from_knobs(knobs, input=plate, node_name=node.name(), input_first=first,
                                         input_last=last)


def _wire_read_back(node: Any, settings: Any) -> None:
    """Point the internal Read at the EXRs and turn the Copy on (knobs of the node, saved with the script)."""
    hosts = _hosts()
    frames = hosts.frame_list(settings)
    node["vectors_file"].setValue(hosts.output_pattern(settings))
    node["read_first"].setValue(frames[0])
    node["read_last"].setValue(frames[-1])
    node["vectors_ready"].setValue(True)
    inner = node.node("VectorRead")
    if inner is not None and inner.knob("reload") is not None:
        inner["reload"].execute()


def render_vectors(node: Any = None) -> threading.Thread | None:
    """"Render Vectors": run ``daflow-vfx render`` in the background with a cancellable progress task."""
    n = _nuke()
    hosts = _hosts()
    from daflow_vfx.errors import DaflowError

    node = node or n.thisNode()
    try:
        settings = _settings(node)
        argv = hosts.command_line(settings)
    except DaflowError as error:
        _message(str(error))
        return None
    log.info("DAFlow: %s", " ".join(argv))
    name = node.fullName()

    def work() -> None:
        task = n.ProgressTask(f"DAFlow vectors: {name}")
        task.setMessage(os.path.basename(hosts.output_pattern(settings)))
        try:
            result = hosts.run_render(argv, progress=task.setProgress, cancelled=task.isCancelled)
        except DaflowError as error:
            n.executeInMainThread(_message, args=(str(error),))
            return
        finally:
            del task  # closes the progress bar
        n.executeInMainThread(_finish, args=(name, settings, result))

    thread = threading.Thread(target=work, name=f"daflow-{name}", daemon=True)
    thread.start()
    return thread


def _finish(name: str, settings: Any, result: Any) -> None:
    n = _nuke()
    node = n.toNode(name)
    if result.cancelled:
        _message(f"{name}: render cancelled; finished frames are kept (tick skip existing to resume)")
    elif result.returncode != 0:
        _message(f"{name}: {result.error}")
    if node is not None and not result.cancelled and result.returncode == 0:
        _wire_read_back(node, settings)


def submit_to_farm(node: Any = None) -> threading.Thread | None:
    """"Submit to Farm": run ``daflow-vfx submit --farm <farm knob> ... render ...`` in the background, as
    an argument list (no shell); its last line, or its ``Error:`` line, is shown when it ends."""
    n = _nuke()
    hosts = _hosts()
    from daflow_vfx.errors import DaflowError

    node = node or n.thisNode()
    try:
        settings = _settings(node)
        farm = str(knob_values(node).get("farm") or "deadline")
        name = f"daflow {os.path.basename(n.root().name())} {node.name()}"
        job_dir = os.path.join(os.path.dirname(hosts.output_pattern(settings)), "farm")
        argv = [*hosts.resolve_executable(settings.executable),
                *hosts.submit_args(settings, farm, name=name, job_dir=job_dir)]
    except DaflowError as error:
        _message(str(error))
        return None
    log.info("DAFlow: %s", " ".join(argv))
    full_name = node.fullName()

    def work() -> None:
        try:
            result = hosts.run_render(argv)
        except DaflowError as error:
            n.executeInMainThread(_message, args=(str(error),))
            return
        n.executeInMainThread(_submitted, args=(full_name, settings, farm, result))

    thread = threading.Thread(target=work, name=f"daflow-submit-{full_name}", daemon=True)
    thread.start()
    return thread


def _submitted(name: str, settings: Any, farm: str, result: Any) -> None:
    if result.returncode != 0:
        _message(f"{name}: {farm}: {result.error}")
        return
    node = _nuke().toNode(name)
    if node is not None:
        _wire_read_back(node, settings)  # the Read shows frames as the farm finishes them
    last = next((line for line in reversed(result.lines) if line.strip()), f"submitted to {farm}")
    _message(f"{name}: {last}")


def load_stabilize(node: Any = None) -> Any:
    """DAFlow_Stabilize's "Load Transform": paste the ``.nk`` that ``daflow-vfx stabilize --nk`` wrote
    below the loader node (the snippet connects to the selected node)."""
    n = _nuke()
    node = node or n.thisNode()
    path = node["nk_file"].evaluate() if node.knob("nk_file") else ""
    if not path or not os.path.isfile(path):
        _message(f"{node.name()}: nk file {path!r} not found; run `daflow-vfx stabilize ... --nk FILE` and "
                 "set the nk file knob to FILE")
        return None
    for selected in n.selectedNodes():
        selected.setSelected(False)
    node.setSelected(True)
    n.nodePaste(path)
    pasted = n.selectedNode()
    pasted.setXYpos(node.xpos(), node.ypos() + 60)
    return pasted


def propagate(node: Any = None) -> threading.Thread | None:
    """DAFlow_Propagate's "Propagate": write the paint node's output on the painted frame, run
    ``daflow-vfx propagate`` in the background (argv from :mod:`daflow_vfx.hosts.nuke_propagate`) and
    point the toolset's STMap Read at the STMaps it wrote."""
    n = _nuke()
    _hosts()  # makes daflow_vfx importable, as for the other buttons
    from daflow_vfx.errors import DaflowError, UsageError
    from daflow_vfx.hosts import nuke as hosts
    from daflow_vfx.hosts.nuke_propagate import PropagateSettings, propagate_args, propagate_paths

    node = node or n.thisNode()
    try:
        upstream = node.input(0)
        if upstream is None or upstream.Class() != "Read" or not upstream["file"].value():
            raise UsageError(f"{node.name()}: connect a Read of the plate (an image sequence on disk)")
        settings = PropagateSettings.from_knobs(knob_values(node) | {
            "propagate_at": node["propagate_at"].value()}, input=upstream["file"].value(),
            node_name=node.name())
        paint_node = n.toNode(str(node["paint_node"].value()))
        if paint_node is None:
            raise UsageError(f"{node.name()}: paint node {node['paint_node'].value()!r} not found")
        paths = propagate_paths(settings)
        argv = [*hosts.resolve_executable(settings.executable), *propagate_args(settings)]
    except DaflowError as error:
        _message(str(error))
        return None
    os.makedirs(os.path.dirname(paths["paint"]), exist_ok=True)
    with n.root():
        write = n.nodes.Write(file=paths["paint"], file_type="exr", channels="rgba")
    try:
        write.setInput(0, paint_node)
        n.execute(write, settings.at, settings.at)
    finally:
        n.delete(write)
    name = node.fullName()

    def work() -> None:
        task = n.ProgressTask(f"DAFlow propagate: {name}")
        try:
            result = hosts.run_render(argv, progress=task.setProgress, cancelled=task.isCancelled)
        except DaflowError as error:
            n.executeInMainThread(_message, args=(str(error),))
            return
        finally:
            del task
        if result.returncode != 0 or result.cancelled:
            n.executeInMainThread(_message, args=(f"{name}: {result.error or 'cancelled'}",))
            return
        n.executeInMainThread(lambda: n.toNode(name)["stmap_file"].setValue(paths["stmap"]))

    thread = threading.Thread(target=work, name=f"daflow-propagate-{name}", daemon=True)
    thread.start()
    return thread
