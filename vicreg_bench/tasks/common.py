"""Helpers the task modules share: image sizes and transforms of a run, the recorded overrides, the
results JSON's dataset block and throughput, and running a step on rank 0 only under torchrun."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from vicreg_bench import distributed as D
from vicreg_bench.tasks.context import TaskContext
from vicreg_bench.tasks.options import default_of, key_of

PAPER_IMAGE_SIZE = 224


def image_sizes(ctx: TaskContext) -> tuple[int, int]:
    """(crop size, resize) of the transforms: paper 224 / 256 unless --image-size / --resize scale them down."""
    size = int(ctx.settings.image_size)
    resize = ctx.settings.resize
    return size, int(resize) if resize is not None else int(round(size * 256 / 224))


def normalize_input(ctx: TaskContext) -> bool:
    return bool(getattr(ctx.ckpt_info, "normalize_input", True))


def precision_of(ctx: TaskContext) -> str:
    from vicreg_bench.features.extract import resolve_precision

    return resolve_precision(ctx.settings.precision, ctx.device)


def transform_params(ctx: TaskContext, name: str) -> dict:
    """The cache transform's parameters, without the repr (kept in the cache key only)."""
    from vicreg_bench.features.transforms import build_transform

    size, resize = image_sizes(ctx)
    _, params = build_transform(name, size=size, resize=resize, normalize=normalize_input(ctx))
    return {k: v for k, v in params.items() if k != "repr"}


def overrides(ctx: TaskContext, keys: tuple[str, ...]) -> dict:
    """The scalings that differ from the protocol, among `keys` (options of the task, and the run's
    image_size / resize), recorded so a scaled-down run never passes for the paper's."""
    fields = {key_of(f): f for f in dataclasses.fields(ctx.options)}
    out: dict[str, Any] = {}
    for k in keys:
        if k == "image_size":
            if ctx.settings.image_size != PAPER_IMAGE_SIZE:
                out[k] = ctx.settings.image_size
        elif k == "resize":
            if ctx.settings.resize is not None:
                out[k] = ctx.settings.resize
        else:
            value = getattr(ctx.options, fields[k].name)
            if value != default_of(fields[k]):
                out[k] = list(value) if isinstance(value, tuple) else value
    return out


def dataset_block(name: str, sets: dict[str, Any]) -> dict:
    """results JSON `dataset`: role -> split, image count and manifest, for FeatureSets or datasets."""
    def count(x: Any) -> int:
        return int(x.num_images) if hasattr(x, "num_images") else len(x)

    def manifest(x: Any) -> str:
        m = x.manifest_sha256
        return m() if callable(m) else m

    return {
        "name": name,
        "splits": {role: x.split for role, x in sets.items()},
        "num_images": {role: count(x) for role, x in sets.items()},
        "manifest_sha256": {role: manifest(x) for role, x in sets.items()},
    }


def skipped_files(*sets: Any) -> list[dict]:
    out: list[dict] = []
    for x in sets:
        out += list(getattr(x, "skipped", []) or [])
    return out


def extraction_throughput(*sets: Any) -> dict:
    """Images/s of the extraction behind each FeatureSet (the original one when it came from the cache)."""
    out = {}
    for fs in sets:
        tp = dict(fs.throughput or {})
        tp["from_cache"] = bool(fs.from_cache)
        out[f"{fs.dataset}/{fs.split}/{fs.transform.get('name')}"] = tp
    return {"extract": out}


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only and give its result to every rank (a failure fails every rank)."""
    if not D.is_distributed():
        return fn()
    result, error, exc = None, None, None
    if D.is_main():
        try:
            result = fn()
        except Exception as e:  # re-raised below, after the other ranks heard about it
            error, exc = f"{type(e).__name__}: {e}", e
    result, error = D.broadcast_object((result, error))
    if error is not None:
        if exc is not None:
            raise exc
        raise RuntimeError(f"failed on rank 0: {error}")
    return result


def need_features(ctx: TaskContext) -> Callable:
    if ctx.features is None:
        raise RuntimeError("this task needs a feature extractor (ctx.features)")
    return ctx.features

