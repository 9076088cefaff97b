"""The detectron2 engine's launch plan, checked without detectron2: each test here is a fault that a real
detectron2 build (issue 17) ran into, caught before detectron2 is reached."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from task_contexts import typed_options
from vicreg_bench.detection import d2_runner
from vicreg_bench.detection.d2_runner import build_command, resolve_launch
from vicreg_bench.detection.d2_train_net import _device, build_parser, launch_problem
from vicreg_bench.detection.protocols import protocol_record
from vicreg_bench.detection.schedule import COCO_FPN_1X, VOC07_12_C4, linear_scaled, shortened
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.context import TaskContext
from vicreg_bench.tasks.detection import COCO, VOC07_12


def _fvcore_accepts(steps: tuple[int, ...], max_iter: int) -> bool:
    """fvcore's MultiStepParamScheduler (detectron2's WarmupMultiStepLR) rules: every milestone in
    1 .. max_iter - 1, strictly increasing, and max_iter >= number of lr values (steps + 1)."""
    return all(0 < s < max_iter for s in steps) and list(steps) == sorted(set(steps)) and max_iter >= len(steps) + 1


@pytest.mark.parametrize("schedule", [VOC07_12_C4, COCO_FPN_1X, linear_scaled(VOC07_12_C4, 2), linear_scaled(COCO_FPN_1X, 4)])
def test_shortened_schedules_are_ones_detectron2_accepts(schedule):
    """det_max_iter=4 failed in fvcore: "Milestone must be smaller than total number of updates" (steps (3, 4))."""
    for max_iter in range(1, 60):
        s = shortened(schedule, max_iter)
        assert _fvcore_accepts(s.steps, max_iter), (max_iter, s.steps)
    assert shortened(linear_scaled(VOC07_12_C4, 2), 4).steps == (3,)
    assert shortened(VOC07_12_C4, 240).steps == (180, 220)  # long enough: both steps keep their share


def test_dropped_steps_did_not_change_the_learning_rate():
    """A step at or after max_iter never applied: dropping it leaves every iteration's lr as it was."""
    s = shortened(linear_scaled(VOC07_12_C4, 2), 4)
    assert [s.lr_at(i) for i in range(4)] == [s.base_lr, s.base_lr, s.base_lr, s.base_lr * 0.1]


def _kv(cmd: list[str]) -> dict[str, str]:
    i = cmd.index("--data-root") + 2
    return dict(zip(cmd[i::2], cmd[i + 1 :: 2]))


def _command(tmp_path: Path, protocol, arch: str = "resnet50", **kw):
    return build_command(protocol, typed_options("voc07_det", **{"det_ims_per_batch": 2, "det_num_workers": 1}), arch=arch,
                         normalize_input=True, weights=tmp_path / "w.pkl", output_dir=tmp_path, data_root=tmp_path,
                         num_gpus=1, seed=0, resume=False, **kw)


def test_fpn_takes_basic_block_resnets_and_c4_refuses_them_with_the_reason(tmp_path):
    """resnet18/34 were refused for both tasks; detectron2's FPN backbone builds them (RES2_OUT_CHANNELS 64)."""
    for arch in ("resnet18", "resnet34"):
        kv = _kv(_command(tmp_path, COCO, arch)[0])
        assert kv["MODEL.RESNETS.DEPTH"] == arch[6:] and kv["MODEL.RESNETS.RES2_OUT_CHANNELS"] == "64"
        with pytest.raises(UserError, match="bottleneck.*FPN.*--det-engine torchvision"):
            _command(tmp_path, VOC07_12, arch)
    with pytest.raises(UserError, match="vit_small"):
        _command(tmp_path, COCO, "vit_small")


def test_command_sets_device_workers_and_the_data_classes(tmp_path):
    """MODEL.DEVICE (CPU runs), det_num_workers (was ignored: detectron2 used its default 4) and the test set's
    number of classes (the synthetic COCO has 8, the config 80)."""
    kv = _kv(_command(tmp_path, COCO, device="cpu", num_classes=8)[0])
    assert kv["MODEL.DEVICE"] == "cpu" and kv["DATALOADER.NUM_WORKERS"] == "1" and kv["MODEL.ROI_HEADS.NUM_CLASSES"] == "8"
    kv = _kv(_command(tmp_path, VOC07_12)[0])
    assert kv["MODEL.DEVICE"] == "cuda" and "MODEL.ROI_HEADS.NUM_CLASSES" not in kv
    # det_max_iter=4 reaches detectron2 with steps below max_iter
    cmd, _ = build_command(VOC07_12, typed_options("voc07_det", **{"det_ims_per_batch": 2, "det_max_iter": 4}), arch="resnet50",
                           normalize_input=True, weights=tmp_path, output_dir=tmp_path, data_root=tmp_path, num_gpus=1,
                           seed=0, resume=False, device="cpu")
    kv = _kv(cmd)
    assert kv["SOLVER.MAX_ITER"] == "4" and ast.literal_eval(kv["SOLVER.STEPS"]) == (3,)


def _ctx(tmp_path: Path, device: str = "cpu", world_size: int = 1, **options) -> TaskContext:
    return TaskContext(ckpt_path=tmp_path / "x.pth", state_dict={}, ckpt_info=SimpleNamespace(arch="resnet50"),
                       data_root=tmp_path, work_dir=tmp_path, cache_dir=tmp_path, device=device,
                       options=typed_options("voc07_det", **options), world_size=world_size)


def test_the_cpu_is_allowed_with_one_process(tmp_path, monkeypatch):
    """The engine refused the CPU ("trains on CUDA GPUs and none is visible"); detectron2 runs there with one process."""
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    plan = resolve_launch(_ctx(tmp_path, "cpu"), typed_options("voc07_det", **{}))
    assert (plan.device, plan.num_gpus, plan.opts.ims_per_batch) == ("cpu", 1, 2)
    plan = resolve_launch(_ctx(tmp_path, "cuda"), typed_options("voc07_det", **{}))  # --device cuda, but none visible
    assert plan.device == "cpu"
    with pytest.raises(UserError, match="det_num_gpus 2.*one process"):
        resolve_launch(_ctx(tmp_path, "cpu", det_num_gpus=2), typed_options("voc07_det", **{"det_num_gpus": 2}))
    monkeypatch.setattr("torch.cuda.device_count", lambda: 8)
    plan = resolve_launch(_ctx(tmp_path, "cpu"), typed_options("voc07_det", **{}))  # --device cpu with GPUs visible: the CPU
    assert plan.device == "cpu"
    plan = resolve_launch(_ctx(tmp_path, "cuda"), typed_options("voc07_det", **{}))
    assert (plan.device, plan.num_gpus, plan.opts.ims_per_batch) == ("cuda", 8, 16)


def test_launch_arguments_detectron2_would_assert_on_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    cases = [
        ({"det_num_gpus": 8}, "only 4 CUDA GPU"),
        ({"det_num_machines": 2}, "det_dist_url tcp://"),  # detectron2: assert "dist_url=auto not supported"
        ({"det_num_machines": 2, "det_machine_rank": 2, "det_dist_url": "tcp://h:1"}, "det_machine_rank 2"),
        ({"det_ims_per_batch": 6}, "multiple of the 4 processes"),  # detectron2: "must be divisible"
    ]
    for options, message in cases:
        with pytest.raises(UserError, match=message):
            resolve_launch(_ctx(tmp_path, "cuda", **options), typed_options("voc07_det", **options))
    with pytest.raises(UserError, match="not under torchrun"):  # every rank would launch its own detectron2
        resolve_launch(_ctx(tmp_path, "cuda", world_size=2), typed_options("voc07_det", **{}))


def test_the_launcher_refuses_what_detectron2s_launch_would_assert_on():
    def args(*argv):
        return build_parser().parse_args(["--config-file", "x.yaml", *argv])

    assert launch_problem(args(), "cpu", 0) is None
    assert "MODEL.DEVICE cpu" in launch_problem(args(), "cuda", 0)
    assert "one process" in launch_problem(args("--num-gpus", "2"), "cpu", 0)
    assert "--dist-url" in launch_problem(args("--num-machines", "2"), "cuda", 8)
    assert "--machine-rank 3" in launch_problem(args("--num-machines", "2", "--machine-rank", "3", "--dist-url", "tcp://h:1"), "cuda", 8)
    assert "only 2" in launch_problem(args("--num-gpus", "4"), "cuda", 2)
    assert _device(["MODEL.WEIGHTS", "w.pkl", "MODEL.DEVICE", "cpu"]) == "cpu" and _device([]) == "cuda"


def test_the_planned_protocol_is_the_one_recorded(tmp_path, monkeypatch):
    """`run` skips a finished task when the planned protocol hash equals the recorded one; with the detectron2
    engine the plan assumed batch 16 while the run recorded 2 per GPU, so a finished task always ran again."""
    from vicreg_bench.tasks.catalog import get_task

    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    ctx = _ctx(tmp_path, "cpu", det_engine="detectron2", det_max_iter=4)
    planned = get_task("voc07_det").protocol(ctx)
    opts = resolve_launch(ctx, ctx.options).opts
    name, recorded, _ = protocol_record(VOC07_12, opts, "resnet50", 1)  # what run_detectron2 records
    assert planned == (name, recorded)


def test_cpu_warning_is_one_line():
    assert "\n" not in d2_runner.CPU_WARNING and d2_runner.CPU_WARNING.startswith("warning:")


def test_a_training_with_other_settings_is_not_resumed(tmp_path):
    """OUTPUT_DIR/last_checkpoint was resumed whatever it came from: a rerun in the same --out with another
    schedule or checkpoint continued the old training."""
    from vicreg_bench.detection.d2_runner import resume_or_clear

    out = tmp_path / "d2_output"
    assert resume_or_clear(out, "a", log=lambda _: None) is False  # fresh
    (out / "last_checkpoint").write_text("model_0000003.pth")
    (out / "model_0000003.pth").write_bytes(b"x")
    assert resume_or_clear(out, "a", log=lambda _: None) is True  # same settings: resume
    said = []
    assert resume_or_clear(out, "b", log=said.append) is False  # other settings: cleared, not resumed
    assert not (out / "last_checkpoint").exists() and not (out / "model_0000003.pth").exists() and "afresh" in said[0]
