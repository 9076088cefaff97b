"""Two CPU processes (gloo) against one process with the same global batch.

1. The loss alone: every rank gets the global variance/covariance and its local invariance, and the
   gradient it sends back, averaged over ranks as DDP does, equals the one-process gradient.
2. vicreg-train under torchrun: the same loss trajectory and the same parameters as one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers.vicreg import vicreg_loss
from trainers.vicreg.model import VICReg
from trainers.vicreg.train import main

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def full_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    za = torch.randn(16, 12, generator=g) * 0.6
    return za, za + 0.3 * torch.randn(16, 12, generator=g)


def _loss_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        za, zb = full_batch()
        rows = slice(rank * 16 // world, (rank + 1) * 16 // world)
        la, lb = za[rows].clone().requires_grad_(), zb[rows].clone().requires_grad_()
        terms = vicreg_loss(la, lb)
        terms["loss"].backward()
        torch.save({"terms": {k: v.detach() for k, v in terms.items()}, "ga": la.grad, "gb": lb.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_one_process(tmp_path):
    world = 2
    mp.spawn(_loss_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    za, zb = full_batch()
    za.requires_grad_()
    zb.requires_grad_()
    ref = vicreg_loss(za, zb)
    ref["loss"].backward()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for key in ("variance", "covariance"):
        for res in results:
            assert res["terms"][key].item() == pytest.approx(ref[key].item(), rel=1e-6)
    # the invariance is local; its mean over ranks is the global one
    mean_inv = sum(res["terms"]["invariance"].item() for res in results) / world
    assert mean_inv == pytest.approx(ref["invariance"].item(), rel=1e-6)
    # DDP averages gradients over ranks: grad / world must equal the one-process gradient rows
    ga = torch.cat([res["ga"] for res in results]) / world
    gb = torch.cat([res["gb"] for res in results]) / world
    torch.testing.assert_close(ga, za.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gb, zb.grad, rtol=1e-5, atol=1e-7)


def test_two_process_training_equals_one_process(synthetic_root, tmp_path):
    data = synthetic_root / "imagenet"
    common = ["--data", str(data), "--arch", "resnet18", "--mlp", "32-32", "--image-size", "16", "--batch-size", "8",
              "--num-workers", "0", "--warmup-epochs", "0", "--base-lr", "2.0", "--epochs", "1", "--device", "cpu",
              "--log-every", "2", "--diag-batches", "0", "--checkpoint-every-steps", "4", "--stop-after-steps", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "trainers.vicreg.train", *common, "--exp-dir", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-4000:]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "--exp-dir", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(before)

    def losses(exp: Path) -> list[dict]:
        return [r for r in map(json.loads, (exp / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]

    one, two_log = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two_log] == [0, 1, 2, 3]
    assert json.loads((tmp_path / "two" / "log.jsonl").read_text().splitlines()[0])["world_size"] == 2
    for a, b in zip(one, two_log):
        for key in ("loss", "invariance", "variance", "covariance"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)
    m1 = torch.load(tmp_path / "one" / "model.pth", weights_only=True)["model"]
    m2 = torch.load(tmp_path / "two" / "model.pth", weights_only=True)["model"]
    assert set(m1) == set(m2)
    # Weight matrices (LARS-scaled updates) agree closely. Biases and BN shifts that feed another batch
    # norm have a zero true gradient, so their plain-SGD updates are float noise and are compared through
    # the network's outputs instead.
    for key, value in m1.items():
        if value.is_floating_point() and value.ndim > 1:
            assert float((m2[key] - value).abs().max()) <= 1e-3 * float(value.abs().max()), key
    outputs = []
    for state in (m1, m2):
        net = VICReg("resnet18", "32-32")
        net.load_state_dict({k[len("module."):]: v for k, v in state.items()})
        x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            outputs.append(net(x, x.flip(-1))["z_a"])
    assert float((outputs[0] - outputs[1]).abs().max()) <= 1e-3 * float(outputs[0].abs().max())
