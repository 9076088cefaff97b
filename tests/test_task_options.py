"""Typed task options: parsing, the one-line errors, --list-options, and, for every registered task, that each
option that can change the numbers moves the protocol hash (so a changed default is a different protocol)."""

from __future__ import annotations

import dataclasses
import typing
from types import SimpleNamespace

import pytest

from task_contexts import typed_options
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vicreg_bench.results import protocol_hash
from vicreg_bench.tasks.catalog import all_tasks, task_context
from vicreg_bench.tasks.options import OptionError, RawOption, default_of, key_of, option_fields, parse_value, resolve_options

INFO = SimpleNamespace(arch="resnet50", sha256="0" * 64, normalize_input=True, method="torchvision")
VIT_INFO = SimpleNamespace(arch="vit_small_patch16_224", sha256="0" * 64, normalize_input=True, method="dino")


def test_values_are_parsed_by_their_declared_type():
    assert parse_value("0.1", float) == 0.1 and parse_value(3, float) == 3.0
    assert parse_value("[10, 20]", tuple[int, ...]) == (10, 20) and parse_value("10,20", tuple[int, ...]) == (10, 20)
    assert parse_value("5", tuple[int, ...]) == (5,)
    assert parse_value("yes", bool) is True and parse_value("off", bool) is False
    assert parse_value("none", int | None) is None and parse_value("7", int | None) == 7
    assert parse_value("A 1 B 2", list[str]) == ["A", "1", "B", "2"]
    for bad, tp in (("abc", float), ("1.5", int), ("maybe", bool), ("none", int), ("x", typing.Literal["a", "b"])):
        with pytest.raises(ValueError):
            parse_value(bad, tp)


def test_misspelt_and_mistyped_options_are_refused_with_the_key_named():
    knn = all_tasks()["imagenet_knn"]
    with pytest.raises(OptionError) as e:
        resolve_options([knn], [RawOption("knn_tempreature", "0.1", "--option knn_tempreature=0.1")])
    msg = str(e.value)
    assert "knn_tempreature" in msg and "did you mean knn_temperature" in msg and "knn_ks" in msg
    assert len(msg.splitlines()) == 1
    with pytest.raises(OptionError, match=r"option knn_temperature expects number, got 'abc'"):
        typed_options("imagenet_knn", knn_temperature="abc")
    with pytest.raises(OptionError, match="knn_ks expects values >= 1"):
        typed_options("imagenet_knn", knn_ks="[0, 5]")
    with pytest.raises(OptionError, match="det_d2_opts"):
        typed_options("voc07_det", det_d2_opts="ONLY_A_KEY")


def test_scoping_and_options_of_tasks_not_run():
    specs = all_tasks()
    linear = [specs["imagenet_linear"], specs["places205_linear"]]
    ignored: list[str] = []
    out = resolve_options(linear, [RawOption("epochs", 5, "--epochs"), RawOption("places205_linear.epochs", 2, "x"),
                                   RawOption("knn_temperature", "0.2", "y"), RawOption("voc07_det.det_max_iter", "9", "z")],
                          specs.values(), ignored)
    assert out["imagenet_linear"].epochs == 5 and out["places205_linear"].epochs == 2  # the scoped value wins
    assert len(ignored) == 2 and "knn_temperature" in ignored[0] and "voc07_det" in ignored[1]
    with pytest.raises(OptionError, match="unknown task 'nope'"):
        resolve_options(linear, [RawOption("nope.epochs", 1, "w")], specs.values())
    with pytest.raises(OptionError, match="unknown option 'epoch'"):
        resolve_options(linear, [RawOption("imagenet_linear.epoch", 1, "w")], specs.values())


def test_cli_refuses_a_misspelt_option_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"never read")
    code = cli_main(["run", "--ckpt", str(ckpt), "--tasks", "imagenet_knn", "--data-root", str(tmp_path),
                     "--option", "knn_tempreature=0.1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "knn_tempreature" in err and "knn_temperature" in err
    code = cli_main(["run", "--ckpt", str(ckpt), "--tasks", "imagenet_knn", "--option", "knn_temperature=warm"])
    err = capsys.readouterr().err
    assert code == 2 and "knn_temperature expects number" in err


def test_list_options_shows_type_default_and_help(capsys):
    assert cli_main(["run", "--list-options", "--tasks", "imagenet_knn,voc07_det"]) == 0
    out = capsys.readouterr().out
    assert "knn_temperature  number, default 0.07: temperature" in out
    assert "det_max_iter" in out and "det_num_workers" in out and "[does not change the numbers]" in out
    assert "imagenet_linear" not in out


def _other_value(f: dataclasses.Field, tp) -> object:
    """A valid value different from the option's default."""
    default = default_of(f)
    inner, args = tp, typing.get_args(tp)
    if type(None) in args:
        inner = next(a for a in args if a is not type(None))
    origin, inner_args = typing.get_origin(inner), typing.get_args(inner)
    if origin is typing.Literal:
        return next(c for c in inner_args if c != default)
    if inner is bool:
        return not default
    if origin in (tuple, list):
        if inner_args[0] is str:
            return ["SOLVER.BASE_LR", "0.1"]
        if default:
            return default[:-1] if len(default) > 1 else (*default, default[-1] * 2)
        return (100,)
    if inner is int:
        return (default or 2) + 1
    if inner is float:
        return (default or 0.25) * 2
    return "other"


@pytest.mark.parametrize("task", list(all_tasks()))
def test_every_option_that_changes_numbers_moves_the_protocol_hash(task, tmp_path):
    spec = all_tasks()[task]

    def plan(info, **options):
        ctx = task_context(task, {}, info, data_root=tmp_path, work_dir=tmp_path, cache_dir=tmp_path,
                           options=options, device="cpu")
        return protocol_hash(*spec.protocol(ctx))

    for key, (f, tp) in option_fields(spec.options).items():
        value = _other_value(f, tp)
        if not f.metadata.get("numbers", True):
            continue
        info = INFO
        try:
            changed = plan(info, **{key: value})
        except UserError as e:  # an option of ViT backbones only: checked on a ViT
            assert "ViT" in str(e), e
            info = VIT_INFO
            changed = plan(info, **{key: value})
        assert changed != plan(info), f"{task}: option {key}={value!r} does not change the protocol hash"
        assert key_of(f) == key
