"""vicreg-train end to end on CPU: logs, checkpoints, export, exact resume, NaN guard, flags (SLURM: test_slurm_trainer.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from trainers.vicreg import export as export_mod
from trainers.vicreg.train import main
from vicreg_bench.checkpoints import load_backbone
from vicreg_bench.models import build_resnet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_args(data: Path, exp: Path, *extra: str, batch: int = 12) -> list[str]:
    return ["--data", str(data), "--arch", "resnet18", "--mlp", "32-32", "--image-size", "16", "--batch-size", str(batch),
            "--num-workers", "0", "--warmup-epochs", "0", "--base-lr", "1.0", "--exp-dir", str(exp), "--log-every", "2",
            "--diag-batches", "2", "--epochs", "1", *extra]


def read_log(exp: Path) -> list[dict]:
    return [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]


def step_losses(exp: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(exp) if r["type"] == "step"}


@pytest.fixture(scope="module")
def short_run(synthetic_root, tmp_path_factory):
    exp = tmp_path_factory.mktemp("short") / "exp"
    assert main(run_args(synthetic_root / "imagenet", exp)) == 0  # 60 images / 12 = 5 steps
    return exp


def test_log_records(short_run):
    records = read_log(short_run)
    types_ = [r["type"] for r in records]
    assert types_[0] == "start" and types_[-1] == "end" and types_.count("step") == 5 and types_.count("epoch") == 1
    start = records[0]
    assert start["steps_per_epoch"] == 5 and start["num_images"] == 60 and start["world_size"] == 1
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(5))
    for r in steps:
        assert {"epoch", "step_in_epoch", "loss", "invariance", "variance", "covariance", "lr", "images_per_s", "elapsed_s"} <= set(r)
        assert r["loss"] == pytest.approx(25 * r["invariance"] + 25 * r["variance"] + r["covariance"], rel=1e-5)
    epoch = next(r for r in records if r["type"] == "epoch")
    assert {"std_repr", "std_proj", "corr_repr", "corr_proj", "std_repr_raw", "std_proj_raw", "loss", "images_per_s"} <= set(epoch)
    assert 0 <= epoch["corr_proj"] <= 1 and epoch["std_proj"] > 0
    assert records[-1]["status"] == "finished"


def test_checkpoint_contents_are_weights_only_and_official(short_run):
    ckpt = torch.load(short_run / "model.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 5 and ckpt["step_in_epoch"] == 0
    keys = set(ckpt["model"])
    assert all(k.startswith(("module.backbone.", "module.projector.")) for k in keys)
    assert "module.projector.0.bias" in keys and "module.projector.3.weight" in keys and "module.projector.3.bias" not in keys
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay_filter"] == "exclude_bias_and_norm"
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"])
    assert ckpt["data_order"] == {"seed": 0, "epoch": 1, "step_in_epoch": 0, "global_batch": 12, "num_samples": 60}
    assert ckpt["args"]["arch"] == "resnet18" and ckpt["scaler"] == {}


def test_backbone_export_is_torchvision_style_and_read_as_vicreg(short_run):
    state = torch.load(short_run / "resnet18.pth", weights_only=True)
    assert not any(k.startswith("fc.") for k in state)
    build_resnet("resnet18").load_state_dict(state, strict=True)
    full = torch.load(short_run / "model.pth", weights_only=True)["model"]
    assert torch.equal(state["layer4.1.conv2.weight"], full["module.backbone.layer4.1.conv2.weight"])
    _, info = load_backbone(short_run / "resnet18.pth")
    assert (info.method, info.arch) == ("vicreg", "resnet18")
    _, info = load_backbone(short_run / "model.pth")
    assert (info.method, info.arch) == ("vicreg", "resnet18")


def test_export_command_writes_backbone_and_official_checkpoint(short_run, tmp_path):
    rc = export_mod.main([str(short_run / "model.pth"), "-o", str(tmp_path / "bb.pth"), "--official", str(tmp_path / "official.pth")])
    assert rc == 0
    official = torch.load(tmp_path / "official.pth", weights_only=True)
    assert set(official) == {"epoch", "model", "optimizer"}
    sd, info = load_backbone(tmp_path / "official.pth")
    assert info.method == "vicreg" and info.format == "vicreg_full"
    build_resnet("resnet18").load_state_dict(sd)
    _, info = load_backbone(tmp_path / "bb.pth")
    assert info.method == "vicreg"
    assert export_mod.main([str(short_run / "model.pth"), "-o", str(tmp_path / "bb.pth")]) == 2  # exists, no --force
    assert export_mod.main([str(tmp_path / "missing.pth")]) == 2


def test_resume_after_kill_reaches_the_same_parameters(synthetic_root, tmp_path):
    data = synthetic_root / "imagenet"
    common = dict(batch=20)  # 3 steps per epoch, 2 epochs
    assert main(run_args(data, tmp_path / "full", "--epochs", "2", **common)) == 0
    # killed after step 5 (mid-epoch 2); the last checkpoint is the one after step 4 (mid-epoch too)
    killed = tmp_path / "killed"
    assert main(run_args(data, killed, "--epochs", "2", "--checkpoint-every-steps", "2", "--stop-after-steps", "5", **common)) == 0
    partial = torch.load(killed / "model.pth", weights_only=True)
    assert (partial["epoch"], partial["step_in_epoch"], partial["global_step"]) == (1, 1, 4)
    assert main(run_args(data, killed, "--epochs", "2", "--resume", **common)) == 0

    a = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    b = torch.load(killed / "model.pth", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        assert torch.equal(state["mu"], b["optimizer"]["state"][pid]["mu"])
    full_losses, resumed_losses = step_losses(tmp_path / "full"), step_losses(killed)
    assert resumed_losses == full_losses  # steps 4 (logged twice: before the kill and after resume) and 5 agree


def test_existing_run_needs_resume(short_run, synthetic_root, capsys):
    assert main(run_args(synthetic_root / "imagenet", short_run)) == 2
    assert "--resume" in capsys.readouterr().err


def test_nan_guard_stops_and_keeps_last_good_checkpoint(synthetic_root, tmp_path, capsys):
    exp = tmp_path / "nan"
    rc = main(run_args(synthetic_root / "imagenet", exp, "--epochs", "2", "--checkpoint-every-steps", "2", "--debug-nan-at-step", "3", batch=20))
    assert rc == 3
    err = capsys.readouterr().err
    assert "loss became nan at step 3" in err and "model.pth" in err
    ckpt = torch.load(exp / "model.pth", weights_only=True)
    assert ckpt["global_step"] == 3  # the end-of-epoch-1 checkpoint, written before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    records = read_log(exp)
    assert records[-1]["type"] == "end" and records[-1]["status"] == "diverged"
    assert any(r["type"] == "step" and r["step"] == 3 and r["finite"] is False for r in records)


def first_step_terms(data: Path, exp: Path, *flags: str) -> dict:
    assert main(run_args(data, exp, "--stop-after-steps", "1", "--diag-batches", "0", *flags)) == 0
    return next(r for r in read_log(exp) if r["type"] == "step")


def test_loss_flags_change_the_logged_terms(synthetic_root, tmp_path):
    data = synthetic_root / "imagenet"
    base = first_step_terms(data, tmp_path / "base")
    paper = first_step_terms(data, tmp_path / "paper", "--variance-form", "paper")
    assert paper["variance"] == pytest.approx(2 * base["variance"], rel=1e-6)
    assert paper["invariance"] == pytest.approx(base["invariance"], rel=1e-6)
    coeffs = first_step_terms(data, tmp_path / "coeffs", "--sim-coeff", "1", "--std-coeff", "1", "--cov-coeff", "0")
    assert coeffs["loss"] == pytest.approx(base["invariance"] + base["variance"], rel=1e-5)


def test_architecture_ablation_flags_train(synthetic_root, tmp_path):
    data = synthetic_root / "imagenet"
    terms = first_step_terms(data, tmp_path / "abl", "--l2-normalize", "--predictor", "48-32", "--no-proj-bn", "--standardize")
    assert -1.0 <= terms["invariance"] <= 0.0  # negative cosine similarity
    assert all(math.isfinite(terms[k]) for k in ("loss", "variance", "covariance"))
    model = torch.load(tmp_path / "abl" / "model.pth", weights_only=True) if (tmp_path / "abl" / "model.pth").exists() else None
    assert model is None  # --stop-after-steps saves nothing
    start = read_log(tmp_path / "abl")[0]["args"]
    assert start["predictor"] == "48-32" and start["no_proj_bn"] and start["standardize"] and start["l2_normalize"]


@pytest.mark.parametrize(
    "extra,message",
    [(["--mlp", "32-x"], "--mlp"), (["--batch-size", "1000"], "--batch-size"), (["--arch", "vgg"], "--arch"),
     (["--epochs", "0"], "--epochs"), (["--predictor", "32-16"], "--predictor")],
)
def test_user_errors_are_one_line(synthetic_root, tmp_path, capsys, extra, message):
    assert main(run_args(synthetic_root / "imagenet", tmp_path / "e", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_missing_data_dir(tmp_path, capsys):
    assert main(run_args(tmp_path / "nowhere", tmp_path / "e")) == 2
    assert "--data" in capsys.readouterr().err


def test_benchmark_runs_on_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_step_benchmark", REPO / "benchmarks" / "train_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    rc = bench.main(["--device", "cpu", "--arch", "resnet18", "--mlp", "32-32", "--batch-size", "4", "--image-size", "16",
                     "--steps", "1", "--warmup", "1", "--rounds", "1", "--json", str(out)])
    assert rc == 0
    assert "over the official-style loop on CPU" in capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["ratio"] > 0 and len(figures["images_per_s"]) == 2
