"""The JSON Schema of results files: the shipped `results_schema.json` plus each registered task's rule.

The file holds everything but the task names: which `$defs` rule checks a task's metrics (top1/top5,
k-NN names, mAP, detection AP) is a fact of the task's registration (`TaskSpec.result_schema`), so a new
task needs no edit here.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no checkpoint.label


def base_schema() -> dict:
    return json.loads(resources.files("vicreg_bench.results").joinpath("results_schema.json").read_text())


def load_schema() -> dict:
    """The schema with `tasks.properties` filled from the task registry (registered tasks can change)."""
    from vicreg_bench.tasks.catalog import all_tasks

    schema = base_schema()
    schema["properties"]["tasks"]["properties"] = {
        spec.name: {"$ref": f"#/$defs/{spec.result_schema}"} for spec in all_tasks().values()
    }
    return schema


def validation_errors(results: Any) -> list[str]:
    """Every way `results` breaks the schema, as 'where: what' lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = []
    for err in sorted(validator.iter_errors(results), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        errors.append(f"{where}: {err.message}")
    return errors
