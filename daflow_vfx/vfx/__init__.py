"""What users do with flow: retime / slow motion and stabilization (shared by the CLI, Nuke and Blender)."""
