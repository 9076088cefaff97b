"""Loading never runs code from the file: crafted pickles are refused and their payload never fires."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

import checkpoint_factories as F
from vicreg_bench.checkpoints import load_backbone, safe_pickle
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError


class CreatesFile:
    """Unpickling this runs `touch target` through os.system: a classic pickle exploit."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class OpensFile:
    """Unpickling this calls builtins.open(target, 'w'), which creates the file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_payload_is_live_with_plain_pickle(tmp_path: Path) -> None:
    """Sanity: the crafted pickle really creates a file when unpickled by plain pickle."""
    target = tmp_path / "created_by_plain_pickle"
    pickle.loads(pickle.dumps({"x": CreatesFile(target)}))
    assert target.exists()


@pytest.mark.parametrize("payload", [CreatesFile, OpensFile])
def test_malicious_pkl_is_refused_and_file_not_created(tmp_path: Path, payload) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in F.trunk().items()}, "__author__": "x", "evil": payload(target)}))
    with pytest.raises(UserError) as err:
        load_backbone(path)
    msg = str(err.value)
    assert str(path) in msg and "refusing to load" in msg
    assert ("posix.system" in msg) or ("builtins.open" in msg) or ("io.open" in msg)
    assert "\n" not in msg
    assert not target.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_malicious_pth_is_refused_and_file_not_created(tmp_path: Path, legacy: bool) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pth"
    # A real-looking checkpoint with the payload tucked among its extra entries.
    torch.save({"state_dict": F.trunk(), "epoch": 3, "hook": CreatesFile(target)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UserError, match="refusing to load.*posix.system"):
        load_backbone(path)
    assert not target.exists()


def test_malicious_file_via_cli_exits_2_without_traceback(tmp_path: Path, capsys) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": F.trunk(), "hook": CreatesFile(target)}, path)
    assert cli_main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to load" in err and "Traceback" not in err
    assert not target.exists()


def _pickle_with_fake_module(obj_factory) -> bytes:
    """Pickle objects of a module that exists only while pickling, as a foreign checkpoint would."""
    fake = types.ModuleType("not_a_real_module_xyz")
    sys.modules[fake.__name__] = fake
    try:
        return pickle.dumps(obj_factory(fake), protocol=2)
    finally:
        del sys.modules[fake.__name__]


def test_unknown_classes_become_inert_data_never_imported() -> None:
    """Plain objects (NEWOBJ + BUILD) are kept as placeholders; their module is never imported."""
    def make(fake):
        Config = type("Config", (), {"__module__": fake.__name__})
        fake.Config = Config
        cfg = Config()
        cfg.lr = 0.1
        return {"cfg": cfg}

    obj = safe_pickle.loads(_pickle_with_fake_module(make))
    cfg = obj["cfg"]
    assert "not_a_real_module_xyz" not in sys.modules
    assert safe_pickle.is_foreign(cfg) and "not_a_real_module_xyz.Config" in repr(cfg)
    assert cfg._state == {"lr": 0.1}
    with pytest.raises(safe_pickle.UnsafePickleError):
        cfg()


def test_reduce_on_an_unknown_global_is_refused() -> None:
    def make(fake):
        def run(arg):  # pragma: no cover - never called
            raise AssertionError("executed")
        run.__module__, run.__qualname__ = fake.__name__, "run"
        fake.run = run

        class Call:
            def __reduce__(self):
                return (run, ("hi",))
        return Call()

    with pytest.raises(safe_pickle.UnsafePickleError, match="not_a_real_module_xyz.run"):
        safe_pickle.loads(_pickle_with_fake_module(make))


def test_admitted_helpers_cannot_build_real_classes() -> None:
    """copyreg.__newobj__ is admitted only for placeholder types, never for real classes."""
    crafted = b"ccopyreg\n__newobj__\n(cbuiltins\nlist\ntR."  # protocol 0: __newobj__(list)
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.loads(crafted)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archives_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UserError, match="TorchScript"):
        load_backbone(path)


def test_restricted_reader_round_trips_tensors_exactly() -> None:
    buf = io.BytesIO()
    sd = F.trunk()
    torch.save({"sd": sd, "args": __import__("argparse").Namespace(a=1)}, buf)
    buf.seek(0)
    out = torch.load(buf, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    assert out["args"].a == 1
    assert all(torch.equal(out["sd"][k], v) for k, v in sd.items())
