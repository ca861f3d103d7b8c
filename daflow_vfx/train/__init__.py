"""Training: synthetic ground-truth data (:mod:`daflow_vfx.train.data`), losses and the two-stage loop.

Submodules import torch and OpenCV; this package itself imports nothing heavy.
"""
