"""Weighted k-NN classification on frozen features (DINO eval_knn.py protocol, after NPID).

Both feature sets are L2-normalised; each test feature takes its k most cosine-similar train
features, each neighbour votes for its class with weight exp(similarity / T), and the class scores
give top-1 and top-5 (percent). Defaults: k in {10, 20, 100, 200}, T = 0.07.

Differences from the reference code, none of which changes its numbers:
- one FAISS search at the largest k serves every k and every temperature (the neighbours of a
  smaller k are a prefix of the larger k's sorted list);
- queries are searched in chunks of fixed size, so memory stays bounded, and the chunking works for
  any number of test images (the reference divides the test set into 100 chunks and breaks below
  100 images);
- a k larger than the number of train images is clamped to it (and reported);
- ties between classes with equal vote totals go to the lower class index (the reference leaves
  them to torch.sort's unspecified order).

The task `imagenet_knn` (paper Table 5) runs it on Resize(256, bicubic) + CenterCrop(224) features
of ImageNet train and val; `vicreg-bench knn` runs it on feature files.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vicreg_bench.errors import UserError
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
from vicreg_bench.tasks.registry import Column, PublishedKey, Resources, register_task

DEFAULT_KS = (10, 20, 100, 200)
DEFAULT_TEMPERATURE = 0.07
FAISS_GPU_MAX_K = 2048  # FAISS GPU flat indexes return at most this many neighbours
TORCH_MAX_BLOCK = 1 << 29  # float32 similarities per brute-force chunk (2 GiB)


def format_temperature(t: float) -> str:
    """'0.07', '0.1', '1': plain decimals, so metric names match the results schema (no exponents)."""
    return np.format_float_positional(float(t), trim="-")


def metric_name(k: int, top: int, temperature: float | None = None) -> str:
    """`k20_top1`; with an extra temperature `k20_top1_T0.1`."""
    name = f"k{k}_top{top}"
    return name if temperature is None else f"{name}_T{format_temperature(temperature)}"


# ----------------------------------------------------------------------------------------------
# nearest-neighbour search backends


def faiss_gpu_available() -> bool:
    """True when the installed FAISS has GPU support and sees a GPU (never raises)."""
    try:
        import faiss

        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001 - any import/driver problem means "no FAISS GPU"
        return False


def resolve_backend(device: str, k: int) -> tuple[str, str]:
    """(backend, torch device) for a requested device: 'faiss-gpu', 'faiss-cpu' or 'torch' (brute force)."""
    device = device or "cpu"
    if device == "auto":
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # noqa: BLE001
            device = "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if faiss_gpu_available() and k <= FAISS_GPU_MAX_K:
            return "faiss-gpu", device
        return "torch", device
    if device != "cpu":
        raise UserError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    return "faiss-cpu", "cpu"


def search_topk(
    train: np.ndarray,
    queries: np.ndarray,
    k: int,
    backend: str = "faiss-cpu",
    device: str = "cpu",
    chunk_size: int = 8192,
    normalize: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine (or, with normalize=False, inner-product) top-k of every query among the `train` rows.

    Returns (similarities, indices), each Q x k, sorted descending. Rows are L2-normalised by the
    backend itself (FAISS's multi-threaded normalize_L2 on a float32 copy, or on the GPU), queries one
    chunk at a time, so the only large extra buffer is the one normalised copy of `train`.
    """
    from tqdm import tqdm

    n_q = queries.shape[0]
    sims = np.empty((n_q, k), dtype=np.float32)
    idx = np.empty((n_q, k), dtype=np.int64)
    if backend == "torch":  # the brute-force similarity block is chunk x n_train: keep it under 2 GiB
        chunk_size = max(1, min(chunk_size, TORCH_MAX_BLOCK // max(1, train.shape[0])))
    chunks = range(0, n_q, chunk_size)
    bar = tqdm(chunks, desc=f"k-NN search ({backend})", unit="chunk", disable=not progress, leave=False)
    if backend.startswith("faiss"):
        import faiss

        base = np.array(train, dtype=np.float32, order="C", copy=True)
        if normalize:
            faiss.normalize_L2(base)
        index = faiss.IndexFlatIP(base.shape[1])
        if backend == "faiss-gpu":
            res = faiss.StandardGpuResources()
            gpu_id = int(device.split(":")[1]) if ":" in device else 0
            index = faiss.index_cpu_to_gpu(res, gpu_id, index)
        index.add(base)
        del base
        for i in bar:
            q = np.array(queries[i : i + chunk_size], dtype=np.float32, order="C", copy=True)
            if normalize:
                faiss.normalize_L2(q)
            d, j = index.search(q, k)
            sims[i : i + chunk_size], idx[i : i + chunk_size] = d, j
        if (idx < 0).any():  # FAISS pads with -1 when it finds fewer than k (never for an exact flat index)
            raise RuntimeError("FAISS returned fewer neighbours than asked")
        return sims, idx
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        dev = torch.device(device)
        base = torch.empty(train.shape, dtype=torch.float32, device=dev)
        for i in range(0, train.shape[0], 65536):
            block = torch.from_numpy(np.ascontiguousarray(train[i : i + 65536], dtype=np.float32)).to(dev)
            base[i : i + 65536] = F.normalize(block, dim=1) if normalize else block
        for i in bar:
            q = torch.from_numpy(np.ascontiguousarray(queries[i : i + chunk_size], dtype=np.float32)).to(dev)
            if normalize:
                q = F.normalize(q, dim=1)
            d, j = (q @ base.T).topk(k, dim=1, largest=True, sorted=True)
            sims[i : i + chunk_size], idx[i : i + chunk_size] = d.cpu().numpy(), j.cpu().numpy()
        return sims, idx
    raise ValueError(f"unknown k-NN backend {backend!r}")


# ----------------------------------------------------------------------------------------------
# voting


def vote_topk_correct(
    neighbor_sims: np.ndarray,
    neighbor_labels: np.ndarray,
    test_labels: np.ndarray,
    k: int,
    temperature: float,
    num_classes: int,
    chunk_size: int = 8192,
) -> tuple[int, int]:
    """Numbers of test samples whose label is the top-1 / among the top-5 weighted-vote classes.

    Uses the first k of the (descending) neighbour lists. Top-5 looks at min(5, k, C) classes, as
    the reference does for k < 5. Class ties go to the lower index (stable sort).
    """
    import torch

    n = neighbor_sims.shape[0]
    top = min(5, k, num_classes)
    correct1 = correct5 = 0
    for i in range(0, n, chunk_size):
        sims = torch.from_numpy(neighbor_sims[i : i + chunk_size, :k]).double()
        labels = torch.from_numpy(neighbor_labels[i : i + chunk_size, :k])
        target = torch.from_numpy(test_labels[i : i + chunk_size])
        scores = torch.zeros(sims.shape[0], num_classes, dtype=torch.float64)
        # exp((s - s_max) / T): the same ranking as exp(s / T) (one factor per query), without overflow at tiny T
        scores.scatter_add_(1, labels, ((sims - sims[:, :1]) / temperature).exp())
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top]
        hit = order.eq(target.view(-1, 1))
        correct1 += int(hit[:, 0].sum())
        correct5 += int(hit.any(dim=1).sum())
    return correct1, correct5


def knn_classify(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    device: str = "cpu",
    chunk_size: int = 8192,
    progress: bool = False,
) -> dict[str, float]:
    """Weighted k-NN top-1/top-5 (percent) for every k and temperature, from one search.

    `temperature` may be a list: the first gives the plain names (`k20_top1`), each further one adds
    `k20_top1_T0.1`-style names. `device`: 'cpu' (FAISS CPU), 'cuda[:i]' (FAISS GPU when the FAISS
    build has it, else torch brute force on the GPU), or 'auto'. A k above the number of train
    features is clamped to it, with a warning; the metric keeps the asked k in its name.
    """
    temperatures = [float(temperature)] if np.isscalar(temperature) else [float(t) for t in temperature]
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise UserError(f"--k: every k must be >= 1, got {ks}")
    if not temperatures or min(temperatures) <= 0:
        raise UserError(f"--temperature: must be > 0, got {temperatures}")
    train_labels = np.asarray(train_labels, dtype=np.int64).reshape(-1)
    test_labels = np.asarray(test_labels, dtype=np.int64).reshape(-1)
    if train_features.shape[0] != train_labels.shape[0] or test_features.shape[0] != test_labels.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    if train_features.shape[0] == 0 or test_features.shape[0] == 0:
        raise UserError("k-NN needs at least one train and one test feature")
    if train_features.shape[1] != test_features.shape[1]:
        raise UserError(f"train features are {train_features.shape[1]}-d but test features {test_features.shape[1]}-d")
    if min(train_labels.min(), test_labels.min()) < 0:
        raise UserError("k-NN labels must be class indices >= 0")
    needed = int(max(train_labels.max(), test_labels.max())) + 1
    num_classes = needed if num_classes is None else int(num_classes)
    if num_classes < needed:
        raise UserError(f"num_classes {num_classes} is smaller than the largest label + 1 ({needed})")

    n_train = train_features.shape[0]
    kmax = min(ks[-1], n_train)
    clamped = [k for k in ks if k > n_train]
    if clamped:
        warnings.warn(f"k-NN: k={clamped} exceed the {n_train} train features; those k use all {n_train}", stacklevel=2)
    backend, dev = resolve_backend(device, kmax)
    sims, idx = search_topk(train_features, test_features, kmax, backend=backend, device=dev, chunk_size=chunk_size,
                            progress=progress)
    neighbor_labels = train_labels[idx]

    metrics: dict[str, float] = {}
    n_test = test_labels.shape[0]
    for t_i, t in enumerate(temperatures):
        suffix_t = None if t_i == 0 else t
        for k in ks:
            c1, c5 = vote_topk_correct(sims, neighbor_labels, test_labels, min(k, kmax), t, num_classes, chunk_size)
            metrics[metric_name(k, 1, suffix_t)] = 100.0 * c1 / n_test
            metrics[metric_name(k, 5, suffix_t)] = 100.0 * c5 / n_test
    return metrics


def knn_notes(n_train: int, ks: Sequence[int], device: str = "cpu") -> list[str]:
    """Human-readable notes on what ran (clamped k, search backend), for tables and JSON outputs."""
    ks = sorted({int(k) for k in ks})
    notes = []
    clamped = [k for k in ks if k > n_train]
    if clamped:
        notes.append(f"k={clamped} exceed the {n_train} train features and were clamped to {n_train}")
    try:
        backend, _ = resolve_backend(device, min(ks[-1], n_train))
        notes.append(f"search backend: {backend}")
    except UserError:
        pass
    return notes


def knn_protocol_params(ks: Sequence[int], temperature: float | Sequence[float]) -> dict:
    temps = [float(temperature)] if np.isscalar(temperature) else [float(t) for t in temperature]
    return {"ks": sorted({int(k) for k in ks}), "temperatures": temps, "l2_normalize": True, "weights": "exp(sim/T)"}


# ------------------------------------------------------------------------------------ the imagenet_knn task


@dataclass(frozen=True)
class KnnOptions(TaskOptions):
    knn_ks: tuple[int, ...] = option(DEFAULT_KS, "numbers of neighbours k (one metric pair per k)", minimum=1)
    knn_temperature: float = option(DEFAULT_TEMPERATURE, "temperature T of the votes exp(similarity / T)")

    def validate(self) -> None:
        if not self.knn_ks:
            raise OptionError("option knn_ks: expected at least one k")
        if not self.knn_temperature > 0:
            raise OptionError(f"option knn_temperature: expected a positive number, got {self.knn_temperature}")


def protocol_imagenet_knn(ctx: TaskContext) -> tuple[str, dict]:
    params = {
        **knn_protocol_params(ctx.options.knn_ks, ctx.options.knn_temperature),
        "dataset": "imagenet", "train_split": "train", "test_split": "val",
        "transform": transform_params(ctx, "knn"),
        "precision": precision_of(ctx),
        "layer": default_layer(ctx.ckpt_info.arch),
        "reference": "facebookresearch/dino eval_knn.py",
    }
    if ov := overrides(ctx, ("image_size", "resize")):
        params["overrides"] = ov
    return "knn_dino", params


@register_task(
    name="imagenet_knn",
    summary="weighted k-NN on ImageNet (DINO protocol)",
    protocol=protocol_imagenet_knn,
    options=KnnOptions,
    data={"imagenet": (("classification", "train"), ("classification", "val"))},
    metrics=tuple(metric_name(k, top) for k in DEFAULT_KS for top in (1, 5)),
    headline=("k20_top1", "k200_top1"),
    result_schema="knn_task",
    columns=(Column("k20_top1", 5, "20-NN", 150), Column("k200_top1", 5, "200-NN", 160)),
    paper_settings={"temperature": DEFAULT_TEMPERATURE},
    published=(PublishedKey("vicreg", 5, "20-NN", "k20_top1"), PublishedKey("vicreg", 5, "200-NN", "k200_top1"),
               PublishedKey("dino", 2, "k-NN", "k20_top1"), PublishedKey("dinov2", "models", "ImageNet k-NN", "k20_top1")),
    suites=("knn",),
    order=10,
    has_fast=True,
    resources=Resources(device="gpu", gpus=1, cpus=10, mem_gb=96, hours=3.0),
)
def run_imagenet_knn(ctx: TaskContext) -> TaskOutput:
    name, params = protocol_imagenet_knn(ctx)
    feats = need_features(ctx)
    train = feats("imagenet", "train", "knn")
    test = feats("imagenet", "val", "knn")
    num_classes = max(len(train.class_names), int(train.labels.max()) + 1, int(test.labels.max()) + 1)

    def compute():
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # a k above the train size is clamped; knn_notes records it
            warnings.simplefilter("ignore", UserWarning)
            m = knn_classify(train.features, train.labels, test.features, test.labels, ks=params["ks"],
                             temperature=params["temperatures"][0], num_classes=num_classes, device=ctx.device)
        return m, time.perf_counter() - t0

    metrics, seconds = on_main(compute)
    throughput = extraction_throughput(train, test)
    throughput["knn_seconds"] = round(seconds, 3)
    return TaskOutput(
        metrics=metrics, protocol_name=name, protocol_params=params,
        dataset=dataset_block("imagenet", {"train": train, "test": test}), throughput=throughput,
        extra={"notes": knn_notes(train.num_images, params["ks"], ctx.device),
               "skipped_files": skipped_files(train, test)},
    )
