"""Render-farm job files: Deadline CommandLine jobs for `daflow-vfx render` and a thin submitter."""

from daflow_vfx.farm.deadline import DeadlineJob, SubmitResult, job_info, plugin_info, submit, write_job_files

__all__ = ["DeadlineJob", "SubmitResult", "job_info", "plugin_info", "submit", "write_job_files"]
