"""Launching work on a SLURM cluster through submitit: typed job settings, checkpointable (requeued) jobs,
and job states read from SLURM. Used by `vicreg-train --launcher slurm`; meant for `vicreg-bench run
--launcher slurm` too. docs/slurm.md runs a real local cluster to try it on."""

from .slurm_state import FINISHED, JobStateChange, cluster_problem, job_states, watch
from .submitit_jobs import (CheckpointableCall, SlurmSettings, export_torch_env, ignore_requeue_signal, job_log_paths,
                            make_executor, parse_extra, submit)

__all__ = ["FINISHED", "CheckpointableCall", "JobStateChange", "SlurmSettings", "cluster_problem", "export_torch_env",
           "ignore_requeue_signal", "job_log_paths", "job_states", "make_executor", "parse_extra", "submit", "watch"]
