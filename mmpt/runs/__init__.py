"""mmpt.runs: the run directory contract and the run history, the bottom layer train, eval, embed and the UIs read.

It imports nothing from mmpt.train, mmpt.eval, mmpt.embed or mmpt.data (torch only inside checkpoint I/O).
"""

from __future__ import annotations

from mmpt.runs.history import list_runs, run_summary
from mmpt.runs.rundir import RESUME_FILES, STATES, RunDir, read_checkpoint_state
from mmpt.runs.status import job_status, run_status
from mmpt.runs.tail import MetricsTail, tail_lines

__all__ = [
    "RESUME_FILES",
    "STATES",
    "MetricsTail",
    "RunDir",
    "job_status",
    "list_runs",
    "read_checkpoint_state",
    "run_status",
    "run_summary",
    "tail_lines",
]
