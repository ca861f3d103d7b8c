"""Operator: Propagate Paint (a background process), its result as an alpha-over strip above the source."""

import bpy

from . import core
from .ops import _BackgroundOperator, _free_channel, add_image_strip


class DAFLOW_OT_propagate(_BackgroundOperator, bpy.types.Operator):
    """Carry the panel's paint image, made on one frame, along the surface through the clip (background)"""

    bl_idname = "daflow.propagate"
    bl_label = "Propagate Paint"
    action = "propagate"
    label = "Propagate Paint"

    def job_action(self) -> str:
        # the panel's shared settings (folder, model, device, colour space) are read as for vectors
        return "render"

    def _output(self, context, settings) -> str:
        from daflow_vfx.hosts.blender_propagate import propagate_output

        return propagate_output(settings.output_folder, settings.name)

    def arguments(self, context, source, settings) -> list[str]:
        from daflow_vfx.hosts.blender_propagate import plate_frame, propagate_action_args

        panel = context.scene.daflow
        scene_frame = panel.paint_frame if panel.paint_frame >= 0 else context.scene.frame_current
        at = plate_frame(scene_frame, timeline_start=source.timeline_start, first_frame=source.first_frame)
        return propagate_action_args(
            input=source.path, paint=bpy.path.abspath(panel.paint_image), at=at,
            output=self._output(context, settings), start_frame=source.first_frame, model=settings.model,
            device=settings.device, input_colorspace=settings.input_colorspace,
            frame_range=settings.frame_range)

    def finish(self, scene, source, settings, job):
        from daflow_vfx.hosts.blender_propagate import propagate_output

        pattern = propagate_output(settings.output_folder, settings.name)
        frames = core.hosts().written_frames(pattern)
        start = source.timeline_start + (frames[0] - source.first_frame if frames else 0)
        strip = add_image_strip(scene, pattern, name=f"{settings.name}.propagate", frame_start=start,
                                channel=_free_channel(scene, source.channel))
        strip.blend_type = "ALPHA_OVER"  # the paint carries its alpha: it sits over the plate below
        strip["daflow_source"] = source.path
        return None


CLASSES = (DAFLOW_OT_propagate,)
