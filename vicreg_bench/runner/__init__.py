"""Running a suite on a checkpoint: the plan (`plan`: tasks, typed options, protocols, what is done), the
in-process execution (`local`) and the closing summary (`summary`). `vicreg-bench run` is its command line."""
