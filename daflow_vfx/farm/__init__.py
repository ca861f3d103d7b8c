"""Render-farm jobs from one job description (:class:`FarmJob`): Deadline CommandLine job files, OpenCue
outlines through PyOutline, and Flamenco jobs of the daflow-vfx job type; `daflow-vfx submit` sends them
(:func:`daflow_vfx.farm.submit.submit`). PyOutline is imported only when an OpenCue job is built."""

from daflow_vfx.farm.deadline import DeadlineJob, SubmitResult, job_info, plugin_info, submit, write_job_files
from daflow_vfx.farm.job import FARMS, FarmJob

__all__ = ["FARMS", "DeadlineJob", "FarmJob", "SubmitResult", "job_info", "plugin_info", "submit",
           "write_job_files"]
