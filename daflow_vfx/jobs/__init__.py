"""What a command does, as a dataclass and a function: the layer the CLI and the host adapters call.

=========================  ==============================================  ===========================
command                    job                                             module
=========================  ==============================================  ===========================
``daflow-vfx render``      :class:`RenderJob` -> :func:`render`            :mod:`.render`
``daflow-vfx flow``        :class:`FlowJob` -> :func:`flow_pair`           :mod:`.flow`
``daflow-vfx retime``      :class:`RetimeJob` -> :func:`run_retime`        :mod:`.retime`
``daflow-vfx stabilize``   :class:`StabilizeJob` -> :func:`run_stabilize`  :mod:`.stabilize`
``daflow-vfx propagate``   :class:`PropagateJob` -> :func:`run_propagate`  :mod:`.propagate`
``daflow-vfx info``        :func:`plate_summary`                           :mod:`.info`
=========================  ==============================================  ===========================

Every job that computes flow holds one :class:`~.options.EngineOptions` and builds its engine with
:func:`~.options.build_engine`; output kinds, sidecar names, atomic text files and the writer thread are
:mod:`.outputs`; the check every job runs before it writes (never over an input, folders made only once
the job can run, a killed run's temps removed) is :mod:`.safety`; what ``--skip-existing`` keeps is
:mod:`.resume`; rendered vectors read back are :mod:`.vectors`. The array maths the jobs run lives in
:mod:`daflow_vfx.engine` and :mod:`daflow_vfx.vfx`, which know nothing of files or commands.

The names load lazily, so ``import daflow_vfx.jobs`` stays cheap (``render`` is not among them: it is
also the name of its module, so import it from :mod:`daflow_vfx.jobs.render`).
"""

from __future__ import annotations

from daflow_vfx._lazy import lazy_getattr

_EXPORTS = {
    "EngineOptions": "options",
    "build_engine": "options",
    "RenderJob": "render",
    "RenderReport": "render",
    "FlowJob": "flow",
    "FlowReport": "flow",
    "flow_pair": "flow",
    "RetimeJob": "retime",
    "RetimeReport": "retime",
    "run_retime": "retime",
    "StabilizeJob": "stabilize",
    "StabilizeReport": "stabilize",
    "run_stabilize": "stabilize",
    "PropagateJob": "propagate",
    "PropagateReport": "propagate",
    "run_propagate": "propagate",
    "PlateSummary": "info",
    "plate_summary": "info",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
