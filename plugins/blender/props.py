"""The panel's settings (``scene.daflow``) and the add-on preferences (external Python / executable)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import core

DEVICES = [("auto", "Auto", "CUDA when available, else CPU"), ("cpu", "CPU", ""), ("cuda", "CUDA", "")]
COLORSPACES = [(c, c.title() if c != "srgb" else "sRGB", "")
               for c in ("auto", "linear", "srgb", "rec709", "log")]
MODES = [(m, m.title(), "") for m in ("translation", "similarity", "affine", "perspective")]
FARMS = [("deadline", "Deadline", "Deadline CommandLine job through deadlinecommand"),
         ("opencue", "OpenCue", "OpenCue job through PyOutline and Cuebot"),
         ("flamenco", "Flamenco", "Flamenco job of the daflow-vfx job type, posted to the Manager")]


class DaflowSettings(bpy.types.PropertyGroup):
    source: StringProperty(
        name="Source", subtype="FILE_PATH", default="",
        description="Plate to process; empty = the active clip (Movie Clip Editor) or the active image/movie "
                    "strip (Sequencer)")
    output_folder: StringProperty(name="Output", subtype="DIR_PATH", default="//daflow/",
                                  description="Folder for the vectors, retimed and stabilized frames")
    name: StringProperty(name="Name", default="",
                         description="Base name of the files (default: the source's)")
    frame_range: StringProperty(name="Frames", default="",
                                description="Frames to process, e.g. 1001-1100 (empty = the whole source)")
    model: StringProperty(name="Model", default="default",
                          description="Flow estimator: default, dis, daflow-compact, ... (daflow-vfx models)")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    input_colorspace: EnumProperty(name="Colourspace", items=COLORSPACES, default="auto")
    detail: FloatProperty(
        name="Vector Detail", default=1.0, min=0.01, max=1.0, soft_min=0.1, subtype="FACTOR",
        description="Compute the flow at this fraction of the source's resolution and upsample the "
                    "vectors to full size (as Kronos' Vector Detail): 1 is full resolution, 0.5 about 4x "
                    "fewer pixels")
    speed: FloatProperty(name="Speed", default=0.5, min=0.01, soft_max=4.0,
                         description="Retime speed: 0.5 is 2x slow motion")
    target_fps: StringProperty(name="FPS", default="",
                               description="Frame-rate conversion SRC:DST (e.g. 24:60); wins over speed")
    stabilize_mode: EnumProperty(name="Mode", items=MODES, default="similarity")
    smooth: FloatProperty(name="Smoothing", default=0.5, min=0.0, soft_max=5.0, subtype="TIME_ABSOLUTE",
                          description="Camera path smoothing, seconds")
    crop: StringProperty(name="Crop", default="auto", description="auto, none or the kept fraction (0.9)")
    vectors: StringProperty(name="Vectors", subtype="FILE_PATH", default="",
                            description="Vector EXR pattern for Vector Blur (default: the last computed)")
    paint_image: StringProperty(name="Paint", subtype="FILE_PATH", default="",
                                description="RGBA image (premultiplied; EXR, PNG or TIFF) painted on one "
                                            "frame of the source, at its size: Propagate carries it along "
                                            "the surface")
    paint_frame: IntProperty(name="Painted On", default=-1, min=-1,
                             description="Timeline frame the paint was made on (-1: the current frame)")
    farm: EnumProperty(name="Farm", items=FARMS, default="deadline",
                       description="Render farm the farm buttons submit to (daflow-vfx submit)")
    chunk_size: IntProperty(name="Chunk", default=10, min=1,
                            description="Frames per farm task (stabilize always runs as one task)")
    # state shown in the panel
    running: BoolProperty(name="Running", default=False, options={"SKIP_SAVE"})
    progress: IntProperty(name="Progress", default=0, min=0, max=100, subtype="PERCENTAGE",
                          options={"SKIP_SAVE"})
    status: StringProperty(name="Status", default="", options={"SKIP_SAVE"})
    last_error: StringProperty(name="Error", default="", options={"SKIP_SAVE"})


class DaflowPreferences(bpy.types.AddonPreferences):
    bl_idname = core.PACKAGE

    python: StringProperty(
        name="Python", subtype="FILE_PATH", default="",
        description="External Python interpreter or venv folder with daflow-vfx installed (keeps torch and "
                    "the GPU outside Blender)")
    executable: StringProperty(name="daflow-vfx", subtype="FILE_PATH", default="",
                               description="The daflow-vfx command (used when Python is empty)")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python")
        layout.prop(self, "executable")
        layout.label(text="Empty: bundled wheels, then $DAFLOW_VFX_EXECUTABLE, then daflow-vfx on PATH.")


CLASSES = (DaflowSettings, DaflowPreferences)
