"""The results JSON: its schema (`schema`), one task's entry (`entry`), files (`io`) and merging (`merge`).

The names below are the package's public API; inside vicreg_bench, import from the submodules.
"""

from vicreg_bench.results.entry import protocol_hash, task_entry
from vicreg_bench.results.io import new_results, read_results, update_results, write_results
from vicreg_bench.results.merge import merge_results
from vicreg_bench.results.schema import SCHEMA_VERSION, validation_errors

__all__ = ["SCHEMA_VERSION", "merge_results", "new_results", "protocol_hash", "read_results", "task_entry",
           "update_results", "validation_errors", "write_results"]
