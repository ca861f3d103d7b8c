"""Operators: Compute Vectors, Retime, Stabilize (background processes), Setup Vector Blur, Cancel."""

import json
import os
from dataclasses import dataclass, replace

import bpy
from bpy.props import EnumProperty, StringProperty

from . import core

MOVIE_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".m4v"}


@dataclass(frozen=True, kw_only=True)
class Source:
    path: str  # sequence pattern (####) or a movie file
    kind: str  # "sequence" | "movie"
    first_frame: int  # plate frame number of the first image (1 for movies)
    timeline_start: int  # scene frame where the first image sits
    name: str  # base name for outputs
    strip: str | None = None  # the sequencer strip it came from
    channel: int = 1
    colorspace: str = ""  # the clip's or strip's colour space in Blender ("" for a path typed in)


def _strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return None
    # Blender 4.4+ names the collection "strips"; 4.2 "sequences"
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _base_name(path: str) -> str:
    name = os.path.basename(path)
    for token in ("#", "%", "$F"):
        name = name.split(token)[0]
    name = os.path.splitext(name)[0] if "." in name and name == os.path.basename(path) else name
    return name.rstrip("._-") or "plate"


def _from_file(path: str, hosts, timeline_start: int | None, scene) -> Source:
    from daflow_vfx.frames import SequencePattern

    path = bpy.path.abspath(path)
    if SequencePattern.parse(path) is not None and any(t in os.path.basename(path) for t in ("#", "%", "$F")):
        frames = hosts.written_frames(path)
        if not frames:
            raise ValueError(f"{path}: no frames on disk; check the source path")
        start = frames[0] if timeline_start is None else timeline_start
        return Source(path=path, kind="sequence", first_frame=frames[0], timeline_start=start,
                      name=_base_name(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file; check the source path")
    if os.path.splitext(path)[1].lower() in MOVIE_EXTENSIONS:
        start = scene.frame_start if timeline_start is None else timeline_start
        return Source(path=path, kind="movie", first_frame=1, timeline_start=start, name=_base_name(path))
    found = hosts.sequence_pattern(path)
    if found is None:
        raise ValueError(f"{path}: a single image is not a clip; use an image sequence or a movie")
    pattern, first = found
    frames = hosts.written_frames(pattern)
    first = frames[0] if frames else first
    start = first if timeline_start is None else timeline_start
    return Source(path=pattern, kind="sequence", first_frame=first, timeline_start=start,
                  name=_base_name(pattern))


def resolve_source(context, override: str = "") -> Source:
    """The plate to process: the operator's/panel's source path, else the active clip of the Movie Clip
    Editor, else the active image or movie strip of the Sequencer. ValueError when there is none."""
    hosts = core.hosts()
    scene = context.scene
    settings = scene.daflow
    explicit = (override or settings.source).strip()
    if explicit:
        return _from_file(explicit, hosts, None, scene)
    space = getattr(context, "space_data", None)
    clip = getattr(context, "edit_movieclip", None) or getattr(space, "clip", None)
    if clip is None and getattr(context, "area", None) is not None and context.area.type == "CLIP_EDITOR":
        clip = scene.active_clip
    if clip is not None:
        return replace(_from_file(clip.filepath, hosts, clip.frame_start, scene),
                       colorspace=clip.colorspace_settings.name)
    strips = _strips(scene)
    strip = scene.sequence_editor.active_strip if strips is not None else None
    if strip is not None and strip.type == "IMAGE":
        first = os.path.join(bpy.path.abspath(strip.directory), strip.elements[0].filename)
        src = _from_file(first, hosts, int(round(strip.frame_start)), scene)
        return replace(src, strip=strip.name, channel=strip.channel,
                       colorspace=strip.colorspace_settings.name)
    if strip is not None and strip.type == "MOVIE":
        src = _from_file(strip.filepath, hosts, int(round(strip.frame_start)), scene)
        return replace(src, strip=strip.name, channel=strip.channel,
                       colorspace=strip.colorspace_settings.name)
    if scene.active_clip is not None:
        clip = scene.active_clip
        return replace(_from_file(clip.filepath, hosts, clip.frame_start, scene),
                       colorspace=clip.colorspace_settings.name)
    raise ValueError("no source: open a clip in the Movie Clip Editor, select an image or movie strip, or "
                     "set the DAFlow source path")


def _settings_for(action: str, context, source: Source):
    hosts = core.hosts()
    s = context.scene.daflow
    folder = s.output_folder.strip()
    if folder.startswith("//") and not bpy.data.filepath:
        raise ValueError("the output folder is relative (//) but the blend file is not saved; save it or set "
                         "an absolute output folder")
    return hosts.ActionSettings(
        action=action, input=source.path, output_folder=bpy.path.abspath(folder), name=s.name or source.name,
        frame_range=s.frame_range, start_frame=source.first_frame if source.kind == "movie" else 1,
        model=s.model.strip() or "default", device=s.device,
        # auto: the colour space Blender reads the clip or strip in (Blender picks it per file, the user
        # may change it), so the flow sees the plate as the artist does
        input_colorspace=(hosts.blender_colorspace(source.colorspace) or "auto")
        if s.input_colorspace == "auto" else s.input_colorspace,
        detail=s.detail, speed=s.speed, target_fps=s.target_fps, mode=s.stabilize_mode, smooth=s.smooth,
        crop=s.crop, fps=context.scene.render.fps / context.scene.render.fps_base,
    )


def _free_channel(scene, above: int) -> int:
    strips = _strips(scene)
    used = {s.channel for s in strips} if strips is not None else set()
    channel = above + 1
    while channel in used:
        channel += 1
    return channel


def add_image_strip(scene, pattern: str, *, name: str, frame_start: int, channel: int):
    """A sequencer image strip holding every frame of ``pattern`` on disk."""
    hosts = core.hosts()
    frames = hosts.written_frames(pattern)
    if not frames:
        raise RuntimeError(f"{pattern}: the job wrote no frames")
    from daflow_vfx.frames import SequencePattern

    parsed = SequencePattern.parse(pattern)
    scene.sequence_editor_create()
    strips = _strips(scene)
    strip = strips.new_image(name=name, filepath=parsed.path(frames[0]), channel=int(channel),
                             frame_start=int(round(frame_start)), fit_method="ORIGINAL")
    for frame in frames[1:]:
        strip.elements.append(os.path.basename(parsed.path(frame)))
    return strip


class _BackgroundOperator:
    """Shared start/modal logic: execute() starts the process (polled by a timer); invoke() also watches it
    modally so errors reach the status bar through self.report."""

    bl_options = {"REGISTER"}
    action = ""
    label = ""
    source: StringProperty(name="Source", default="", options={"SKIP_SAVE"},
                           description="Plate path; empty = the panel's source or the active clip/strip")

    def finish(self, scene, source: Source, settings, job) -> str | None:  # overridden
        """Wire the result into Blender; may return a line for the status bar."""
        return None

    def job_action(self) -> str:
        return self.action

    def arguments(self, context, source: Source, settings) -> list[str]:
        """The daflow-vfx arguments of this operator (after the command words)."""
        return core.hosts().action_args(settings)

    def execute(self, context):
        self._job = None
        try:
            source = resolve_source(context, self.source)
            settings = _settings_for(self.job_action(), context, source)
            argv = [*core.command_words(), *self.arguments(context, source, settings)]
            scene_name = context.scene.name
            finish = self.finish

            def on_finish(job, source=source, settings=settings, scene_name=scene_name):
                return finish(bpy.data.scenes[scene_name], source, settings, job)

            self._job = core.start(self.label, context.scene, argv, on_finish)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the user, not crash Blender
            message = str(exc).removeprefix("Error: ")
            context.scene.daflow.last_error = message
            context.scene.daflow.status = f"{self.label}: failed"
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"{self.label}: started")
        return {"FINISHED"}

    def invoke(self, context, event):
        result = self.execute(context)
        if "FINISHED" not in result or self._job is None or context.window is None:
            return result
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not self._job.finished:
            if event.type == "TIMER":
                context.workspace.status_text_set(f"DAFlow {self.label}: {self._job.job.progress}%")
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        for level, text in self._job.messages:
            self.report({level}, text)
        return {"FINISHED"}


class DAFLOW_OT_compute_vectors(_BackgroundOperator, bpy.types.Operator):
    """Compute motion vectors (Blender Vector layout EXRs) in a background process"""

    bl_idname = "daflow.compute_vectors"
    bl_label = "Compute Vectors"
    action = "render"
    label = "Compute Vectors"

    def finish(self, scene, source, settings, job):
        hosts = core.hosts()
        scene.daflow.vectors = hosts.output_pattern(settings)


def _add_output_strip(scene, source, settings, *, suffix: str):
    """Add the job's written frames as an image strip aligned with the source on the timeline."""
    hosts = core.hosts()
    pattern = hosts.output_pattern(settings)
    frames = hosts.written_frames(pattern)
    start = source.timeline_start + (frames[0] - source.first_frame if frames else 0)
    strip = add_image_strip(scene, pattern, name=f"{settings.name}.{suffix}", frame_start=start,
                            channel=_free_channel(scene, source.channel))
    return pattern, strip


class DAFLOW_OT_retime(_BackgroundOperator, bpy.types.Operator):
    """Retime the clip in a background process and add the result as a new strip"""

    bl_idname = "daflow.retime"
    bl_label = "Retime"
    action = "retime"
    label = "Retime"

    def finish(self, scene, source, settings, job):
        _, strip = _add_output_strip(scene, source, settings, suffix="retime")
        strip["daflow_source"] = source.path


class DAFLOW_OT_stabilize(_BackgroundOperator, bpy.types.Operator):
    """Stabilize the clip in a background process; add the stabilized strip and keep the transforms"""

    bl_idname = "daflow.stabilize"
    bl_label = "Stabilize"
    action = "stabilize"
    label = "Stabilize"

    def finish(self, scene, source, settings, job):
        hosts = core.hosts()
        pattern, strip = _add_output_strip(scene, source, settings, suffix="stabilize")
        channel = strip.channel
        json_path = pattern.split("####")[0].rstrip(".") + ".stabilize.json"
        with open(json_path, encoding="utf-8") as handle:
            document = json.load(handle)
        text_name = os.path.basename(json_path)
        text = bpy.data.texts.get(text_name) or bpy.data.texts.new(text_name)
        text.from_string(json.dumps(document, indent=1))
        strip["daflow_source"] = source.path
        strip["daflow_transforms"] = json_path
        # the same transforms, live: a muted strip of the source with keyframed transform
        if source.kind == "sequence":
            live = add_image_strip(scene, source.path, name=f"{settings.name}.stabilize.live",
                                   frame_start=source.timeline_start, channel=_free_channel(scene, channel))
        else:
            live = _strips(scene).new_movie(name=f"{settings.name}.stabilize.live", filepath=source.path,
                                            channel=_free_channel(scene, channel),
                                            frame_start=int(round(source.timeline_start)),
                                            fit_method="ORIGINAL")
        live.mute = True
        live["daflow_transforms"] = json_path
        for key in hosts.stabilize_keys(document):
            at = source.timeline_start + key.frame - source.first_frame
            transform = live.transform
            transform.offset_x, transform.offset_y = key.offset_x, key.offset_y
            transform.rotation = key.rotation
            transform.scale_x = transform.scale_y = key.scale
            for prop in ("offset_x", "offset_y", "rotation", "scale_x", "scale_y"):
                transform.keyframe_insert(prop, frame=at)


class DAFLOW_OT_submit_farm(_BackgroundOperator, bpy.types.Operator):
    """Submit vectors, a retime or a stabilize to the panel's farm (daflow-vfx submit, in the background)"""

    bl_idname = "daflow.submit_farm"
    bl_label = "Submit to Farm"
    label = "Submit to Farm"
    job: EnumProperty(name="Job", default="render", items=[
        ("render", "Vectors", "Motion vectors (daflow-vfx render)"),
        ("retime", "Retime", "Retimed frames (daflow-vfx retime)"),
        ("stabilize", "Stabilize", "Stabilized frames (daflow-vfx stabilize)")])

    def job_action(self) -> str:
        return self.job

    def arguments(self, context, source: Source, settings) -> list[str]:
        hosts = core.hosts()
        scene = context.scene
        # a farm needs the range up front: a sequence's own frames when the panel gives none (a retime's
        # output frames and a movie's length are only known once it runs, so those need the Frames field)
        if not settings.frame_range.strip() and source.kind == "sequence" and settings.action != "retime":
            frames = hosts.written_frames(source.path)
            settings = replace(settings, frame_range=f"{frames[0]}-{frames[-1]}")
        prefs = core.preferences()
        return hosts.submit_args(settings, scene.daflow.farm, chunk_size=scene.daflow.chunk_size,
                                 executable=getattr(prefs, "executable", "") if prefs is not None else "")

    def finish(self, scene, source, settings, job) -> str | None:
        lines = [line for line in job.job.lines if line.strip()]
        return lines[-1] if lines else None


class DAFLOW_OT_setup_vector_blur(bpy.types.Operator):
    """Build the compositor graph: plate + our vector EXRs (Vector.X/Y/Z/W) into a Vector Blur node"""

    bl_idname = "daflow.setup_vector_blur"
    bl_label = "Setup Vector Blur"
    bl_options = {"REGISTER", "UNDO"}

    source: StringProperty(name="Source", default="", options={"SKIP_SAVE"})
    vectors: StringProperty(name="Vectors", default="", options={"SKIP_SAVE"},
                            description="Vector EXR pattern; empty = the panel's vectors")

    def execute(self, context):
        try:
            build_vector_blur(context, source_path=self.source, vectors=self.vectors)
        except Exception as exc:  # noqa: BLE001 - reported, never a crash
            context.scene.daflow.last_error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, "Vector Blur graph ready")
        return {"FINISHED"}


def _image_node(tree, label: str, path: str, kind: str, first: int, start: int, count: int):
    node = tree.nodes.new("CompositorNodeImage")
    node.label = node.name = label
    image = bpy.data.images.load(path, check_existing=True)
    if kind == "sequence":
        image.source = "SEQUENCE"
    elif kind == "movie":
        image.source = "MOVIE"
    node.image = image
    if kind != "still":
        node.frame_duration = count
        node.frame_start = start
        node.frame_offset = first - 1 if kind == "sequence" else 0
    return node


def build_vector_blur(context, *, source_path: str = "", vectors: str = ""):
    """The compositor graph. Blender 5: ``scene.compositing_node_group`` with a Group Output; 4.2-4.5:
    ``scene.node_tree`` with a Composite node."""
    hosts = core.hosts()
    scene = context.scene
    source = resolve_source(context, source_path)
    pattern = bpy.path.abspath((vectors or scene.daflow.vectors).strip())
    if not pattern:
        raise ValueError("no vectors: run Compute Vectors first or set the vector EXR pattern")
    frames = hosts.written_frames(pattern) if "#" in pattern else []
    if not frames:
        raise ValueError(f"{pattern}: no vector EXRs on disk; run Compute Vectors first")
    from daflow_vfx.frames import SequencePattern

    plate_frames = hosts.written_frames(source.path) if source.kind == "sequence" else frames
    first_plate = SequencePattern.parse(source.path).path(plate_frames[0]) if source.kind == "sequence" \
        else source.path
    vec_first = SequencePattern.parse(pattern).path(frames[0])

    if hasattr(scene, "compositing_node_group"):
        tree = bpy.data.node_groups.new("DAFlow Vector Blur", "CompositorNodeTree")
        scene.compositing_node_group = tree
        tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        output = tree.nodes.new("NodeGroupOutput")
    else:  # Blender 4.2-4.5
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        output = tree.nodes.new("CompositorNodeComposite")
    scene.render.use_compositing = True

    start = source.timeline_start
    plate = _image_node(tree, "DAFlow Plate", first_plate, source.kind, source.first_frame, start,
                        len(plate_frames))
    vec = _image_node(tree, "DAFlow Vectors", vec_first, "sequence", frames[0],
                      start + frames[0] - source.first_frame, len(frames))
    blur = tree.nodes.new("CompositorNodeVecBlur")
    blur.name = blur.label = "DAFlow Vector Blur"
    speed = vec.outputs.get("Vector")
    if speed is None:
        raise ValueError(f"{vec_first}: no Vector.X/Y/Z/W channels; render with --layout blender or both")
    tree.links.new(plate.outputs[0], blur.inputs["Image"])
    tree.links.new(speed, blur.inputs["Speed"])
    tree.links.new(blur.outputs["Image"], output.inputs[0])
    viewer = tree.nodes.new("CompositorNodeViewer")
    tree.links.new(blur.outputs["Image"], viewer.inputs[0])
    for i, node in enumerate((plate, vec, blur, output)):
        node.location = (i * 260 - 400, 0 if node is not vec else -300)
    viewer.location = (400, -250)
    # the compositor renders at the scene's size: match the plate
    width, height = plate.image.size[:]
    if width and height:
        scene.render.resolution_x, scene.render.resolution_y = width, height
        scene.render.resolution_percentage = 100
    return tree


class DAFLOW_OT_cancel(bpy.types.Operator):
    """Stop the running DAFlow background processes of this scene"""

    bl_idname = "daflow.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        count = core.cancel_all(context.scene)
        self.report({"WARNING"} if count else {"INFO"}, f"cancelled {count} job(s)")
        return {"FINISHED"}


CLASSES = (DAFLOW_OT_compute_vectors, DAFLOW_OT_retime, DAFLOW_OT_stabilize, DAFLOW_OT_submit_farm,
           DAFLOW_OT_setup_vector_blur, DAFLOW_OT_cancel)
