"""k-NN speed: vicreg-bench's FAISS k-NN vs the reference brute force (torch matmul + topk per k).

The baseline is DINO's eval_knn.py algorithm on the same device: for EACH k in (10, 20, 100, 200),
a full pass of chunked `test @ train.T`, `topk(k)`, weighted votes. vicreg-bench does one search at
the largest k (FAISS flat inner-product index: GPU index when the FAISS build has GPU support, else
torch on the GPU; FAISS CPU on the CPU) and derives every k from it. Both include L2 normalisation.
The script prints both times, the ratio, and checks that the accuracies agree.

    .venv/bin/python benchmarks/knn_speed.py                    # CPU, scaled down: 50k x 512, 2k queries
    python benchmarks/knn_speed.py --device cuda --full         # ImageNet size: 1.28M x 2048, 50k queries
    python benchmarks/knn_speed.py --device cuda --n-train 200000 --n-test 10000 --dim 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vicreg_bench.tasks.knn import DEFAULT_KS, DEFAULT_TEMPERATURE, faiss_gpu_available, knn_classify, resolve_backend  # noqa: E402


def synthetic_features(n_train: int, n_test: int, dim: int, num_classes: int, seed: int, device: str):
    """Gaussian class clusters (float32), generated on the GPU when there is one (1.28M x 2048 is 10 GB)."""
    import torch

    gen_device = device if device.startswith("cuda") else "cpu"
    g = torch.Generator(device=gen_device).manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g, device=gen_device) * 0.25

    def draw(n):
        labels = torch.randint(0, num_classes, (n,), generator=g, device=gen_device)
        x = torch.randn(n, dim, generator=g, device=gen_device)
        x += centers[labels]
        return x.cpu().numpy(), labels.cpu().numpy()

    train, train_labels = draw(n_train)
    test, test_labels = draw(n_test)
    return train, train_labels, test, test_labels


def reference_knn(train, train_labels, test, test_labels, ks, temperature, num_classes, device, chunk):
    """DINO's knn_classifier, once per k: brute-force matmul + topk over chunks of the test set."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    train_t = F.normalize(torch.from_numpy(train).to(dev), dim=1)
    test_t = F.normalize(torch.from_numpy(test).to(dev), dim=1)
    train_l = torch.from_numpy(train_labels).to(dev)
    test_l = torch.from_numpy(test_labels).to(dev)
    metrics = {}
    for k in ks:
        top1 = top5 = 0
        for i in range(0, test_t.shape[0], chunk):
            sims, idx = (test_t[i : i + chunk] @ train_t.T).topk(k, dim=1, largest=True, sorted=True)
            votes = torch.zeros(sims.shape[0], num_classes, device=dev)
            votes.scatter_add_(1, train_l[idx], (sims / temperature).exp())
            pred = votes.topk(min(5, k), dim=1).indices
            hit = pred.eq(test_l[i : i + chunk].view(-1, 1))
            top1 += int(hit[:, 0].sum())
            top5 += int(hit.any(dim=1).sum())
        metrics[f"k{k}_top1"] = 100.0 * top1 / test_t.shape[0]
        metrics[f"k{k}_top5"] = 100.0 * top5 / test_t.shape[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--full", action="store_true", help="ImageNet size: 1.28M train x 2048-d, 50k test (needs a GPU)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=None, help="test rows per chunk of the reference (default: 1/100 of the test set, as DINO)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here", file=sys.stderr)
        return 2
    n_train, n_test, dim = (1_281_167, 50_000, 2048) if args.full else (50_000, 2_000, 512)
    n_train, n_test, dim = args.n_train or n_train, args.n_test or n_test, args.dim or dim
    on_gpu = args.device.startswith("cuda")
    chunk = args.chunk or max(1, n_test // 100)  # DINO splits the test set into 100 chunks
    ks = list(DEFAULT_KS)
    backend, _ = resolve_backend(args.device, max(ks))
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if on_gpu else None
    print(f"device {args.device}{f' ({gpu})' if gpu else ''}; vicreg-bench backend: {backend} "
          f"(FAISS GPU available: {faiss_gpu_available()}); torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    t = time.perf_counter()
    train, train_labels, test, test_labels = synthetic_features(n_train, n_test, dim, args.num_classes, args.seed, args.device)
    print(f"features: train {train.shape}, test {test.shape}, {args.num_classes} classes "
          f"(generated in {time.perf_counter() - t:.1f} s)", flush=True)

    if on_gpu:  # warm up CUDA and cuBLAS so neither method pays the start-up
        a = torch.randn(1024, dim, device=args.device)
        (a @ a.T).topk(10, dim=1)
        torch.cuda.synchronize()

    t = time.perf_counter()
    ours = knn_classify(train, train_labels, test, test_labels, ks=ks, temperature=DEFAULT_TEMPERATURE,
                        num_classes=args.num_classes, device=args.device)
    t_ours = time.perf_counter() - t
    print(f"vicreg-bench ({backend}, one search at k={max(ks)}): {t_ours:8.2f} s   k20_top1 {ours['k20_top1']:.2f}  "
          f"k200_top1 {ours['k200_top1']:.2f}", flush=True)
    figures = {"device": args.device, "gpu": gpu, "backend": backend, "n_train": n_train, "n_test": n_test,
               "dim": dim, "vicreg_bench_seconds": t_ours, "vicreg_bench_metrics": ours}
    if not args.skip_reference:
        t = time.perf_counter()
        ref = reference_knn(train, train_labels, test, test_labels, ks, DEFAULT_TEMPERATURE, args.num_classes,
                            args.device, chunk)
        t_ref = time.perf_counter() - t
        diff = max(abs(ref[m] - ours[m]) for m in ref)
        print(f"brute force torch matmul+topk, one pass per k: {t_ref:8.2f} s   k20_top1 {ref['k20_top1']:.2f}  "
              f"k200_top1 {ref['k200_top1']:.2f}")
        print(f"speed-up: {t_ref / t_ours:.2f}x   max |metric difference|: {diff:.3f} points "
              "(ties between equal vote totals may break differently)")
        figures.update(reference_seconds=t_ref, reference_metrics=ref, speedup=t_ref / t_ours, max_metric_difference=diff)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
