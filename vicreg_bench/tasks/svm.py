"""The `voc07_svm` task (paper Table 2): VISSL's per-class LIBLINEAR SVMs on frozen VOC07 features.

The solver is `vicreg_bench.tasks.svm_solver`. The headline runs on VISSL's "squash" image variant
(Resize((224, 224)), the transform behind the published numbers); by default the paper text's centre-crop
variant is computed too (`center_crop_mAP`). `--svm-variant` / `svm_variant` picks one or both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from vicreg_bench.features.layers import default_layer
from vicreg_bench.tasks.common import (
    dataset_block,
    extraction_throughput,
    need_features,
    on_main,
    overrides,
    precision_of,
    skipped_files,
    transform_params,
)
from vicreg_bench.tasks.context import TaskContext, TaskOutput
from vicreg_bench.tasks.options import OptionError, TaskOptions, option
from vicreg_bench.tasks.registry import Column, DemoPreset, PublishedKey, Resources, register_task
from vicreg_bench.tasks.svm_solver import IMAGE_VARIANTS, VISSL_COSTS, svm_protocol_params, train_eval_voc07_svm


@dataclass(frozen=True)
class SvmOptions(TaskOptions):
    svm_variant: Literal["both", "squash", "center_crop"] = option(
        "both", "image variant: squash (VISSL, the headline), center_crop (paper text), or both (squash headline)")
    svm_costs: tuple[float, ...] = option(VISSL_COSTS, "SVM costs C searched by cross-validation (VISSL's list)")
    svm_jobs: int | None = option(None, "parallel SVM worker processes (default: every CPU core)", minimum=1,
                                  numbers=False)

    def validate(self) -> None:
        if not self.svm_costs or any(not c > 0 for c in self.svm_costs):
            raise OptionError(f"option svm_costs: expected positive numbers, got {list(self.svm_costs)}")

    def variants(self) -> list[str]:
        """The image variants to compute, the headline first."""
        return list(IMAGE_VARIANTS) if self.svm_variant == "both" else [self.svm_variant]


def protocol_voc07_svm(ctx: TaskContext) -> tuple[str, dict]:
    variants = ctx.options.variants()
    params = {
        "dataset": "voc2007", "train_split": "trainval", "test_split": "test",
        "image_variant": variants[0],
        "extra_variants": variants[1:],
        "transforms": {v: transform_params(ctx, f"svm_{v}") for v in variants},
        "precision": precision_of(ctx),
        "layer": default_layer(ctx.ckpt_info.arch),
        "reference": "VISSL tools/train_svm.py, vissl/utils/svm_utils",
    }
    params["svm"] = svm_protocol_params([float(c) for c in ctx.options.svm_costs])
    if ov := overrides(ctx, ("image_size", "resize", "svm_costs")):
        params["overrides"] = ov
    return "svm_vissl", params


@register_task(
    name="voc07_svm",
    summary="VOC07 linear SVMs (VISSL protocol)",
    protocol=protocol_voc07_svm,
    options=SvmOptions,
    data={"voc2007": (("classification", "trainval"), ("classification", "test"))},
    metrics=("mAP", "per_class_AP", "center_crop_mAP", "squash_mAP"),
    headline=("mAP",),
    result_schema="svm_task",
    columns=(Column("mAP", 2, "VOC07 SVM", 80),),
    published=(PublishedKey("vicreg", 2, "VOC07", "mAP"),),
    suites=("table2",),
    order=20,
    has_fast=True,
    resources=Resources(device="gpu", gpus=1, cpus=32, mem_gb=64, hours=3.0),
    demo={"small": DemoPreset({"svm_variant": "squash"}),
          "tiny": DemoPreset({"svm_variant": "squash", "svm_costs": (0.1, 1.0)})},
)
def run_voc07_svm(ctx: TaskContext) -> TaskOutput:
    from vicreg_bench.data.voc import VOC_CLASSES

    name, params = protocol_voc07_svm(ctx)
    feats = need_features(ctx)
    sets = {v: (feats("voc2007", "trainval", f"svm_{v}"), feats("voc2007", "test", f"svm_{v}"))
            for v in [params["image_variant"], *params["extra_variants"]]}

    def compute():
        out = {}
        for v, (train, test) in sets.items():
            t0 = time.perf_counter()
            r = train_eval_voc07_svm(train.features, train.labels, test.features, test.labels,
                                     class_names=list(VOC_CLASSES), costs=params["svm"]["costs"],
                                     n_jobs=ctx.options.svm_jobs, seed=ctx.seed, image_variant=v)
            r = dict(r)
            r["seconds"] = round(time.perf_counter() - t0, 3)
            out[v] = r
        return out

    results = on_main(compute)
    head = results[params["image_variant"]]
    metrics = {"mAP": float(head["mAP"]), "per_class_AP": {k: float(x) for k, x in head["per_class_AP"].items()}}
    for v in params["extra_variants"]:
        metrics[f"{v}_mAP"] = float(results[v]["mAP"])
    extra = {
        "variants": {v: {k: x for k, x in r.items()} for v, r in results.items()},
        "skipped_files": skipped_files(*[s for pair in sets.values() for s in pair]),
    }
    train, test = sets[params["image_variant"]]
    throughput = extraction_throughput(*[s for pair in sets.values() for s in pair])
    throughput["svm_seconds"] = {v: r["seconds"] for v, r in results.items()}
    return TaskOutput(metrics=metrics, protocol_name=name, protocol_params=params,
                      dataset=dataset_block("voc2007", {"train": train, "test": test}),
                      throughput=throughput, extra=extra)
