"""The DAFlow sidebar panel, drawn in the Movie Clip Editor and in the Video Sequencer."""

import bpy


def draw_panel(layout, context) -> None:
    settings = context.scene.daflow
    box = layout.column(align=True)
    box.prop(settings, "source")
    box.prop(settings, "frame_range")
    box.prop(settings, "output_folder")
    box.prop(settings, "name")
    row = layout.row(align=True)
    row.prop(settings, "model")
    row.prop(settings, "device", text="")
    layout.prop(settings, "input_colorspace")
    layout.prop(settings, "detail", slider=True)

    col = layout.column(align=True)
    col.operator("daflow.compute_vectors", icon="ORIENTATION_VIEW")

    col = layout.column(align=True)
    row = col.row(align=True)
    row.prop(settings, "speed")
    row.prop(settings, "target_fps")
    col.operator("daflow.retime", icon="TIME")

    col = layout.column(align=True)
    col.prop(settings, "stabilize_mode")
    row = col.row(align=True)
    row.prop(settings, "smooth")
    row.prop(settings, "crop")
    col.operator("daflow.stabilize", icon="CON_CAMERASOLVER")

    col = layout.column(align=True)
    col.prop(settings, "paint_image")
    col.prop(settings, "paint_frame")
    col.operator("daflow.propagate", icon="BRUSH_DATA")

    col = layout.column(align=True)
    row = col.row(align=True)
    row.prop(settings, "farm", text="")
    row.prop(settings, "chunk_size")
    row = col.row(align=True)
    for action, text in (("render", "Vectors"), ("retime", "Retime"), ("stabilize", "Stabilize")):
        row.operator("daflow.submit_farm", text=text, icon="NETWORK_DRIVE").job = action

    col = layout.column(align=True)
    col.prop(settings, "vectors")
    col.operator("daflow.setup_vector_blur", icon="NODETREE")

    if settings.running:
        row = layout.row(align=True)
        row.progress(factor=settings.progress / 100.0, type="BAR", text=f"{settings.status}")
        row.operator("daflow.cancel", text="", icon="CANCEL")
    elif settings.status:
        layout.label(text=settings.status, icon="ERROR" if settings.last_error else "INFO")


class DAFLOW_PT_clip(bpy.types.Panel):
    bl_label = "DAFlow"
    bl_idname = "DAFLOW_PT_clip"
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "DAFlow"

    def draw(self, context):
        draw_panel(self.layout, context)


class DAFLOW_PT_sequencer(bpy.types.Panel):
    bl_label = "DAFlow"
    bl_idname = "DAFLOW_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "DAFlow"

    def draw(self, context):
        draw_panel(self.layout, context)


CLASSES = (DAFLOW_PT_clip, DAFLOW_PT_sequencer)
