"""Read a checkpoint file of any container into Python objects, safely.

The container is told by the file's first bytes, never by its extension (`.pth`, `.pth.tar`,
`.torch`, `.ckpt`, `.pkl` and `.safetensors` are all used for all of them):

- a zip archive with `data.pkl`: PyTorch's format since 1.6;
- a pickle whose first object is torch's magic number: PyTorch's legacy format;
- any other pickle: e.g. detectron2 `.pkl` files (numpy arrays);
- an 8-byte header length followed by JSON: safetensors.

PyTorch files go through `torch.load(weights_only=True)` first; only if that refuses a global do
they go through `safe_pickle` (plain objects kept as data, never called). Plain pickles go through
`safe_pickle` directly. Every failure is a `UserError` naming the file.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vicreg_bench.checkpoints import safe_pickle
from vicreg_bench.errors import UserError

EXTENSIONS = ".pth, .pth.tar, .pt, .torch, .ckpt, .pkl, .safetensors"
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class RawCheckpoint:
    """The unpickled top-level object and how it was read."""

    obj: Any
    container: str  # torch_zip | torch_legacy | pickle | safetensors
    reader: str  # weights_only | restricted_unpickler | safetensors
    metadata: dict[str, str] | None = None  # safetensors header metadata
    notes: list[str] = field(default_factory=list)


def _refused(path: Path, err: Exception) -> UserError:
    return UserError(
        f"{path}: refusing to load: {err}. Loading never runs code from a file; if you trust it, "
        "load it yourself and re-save only its state dict"
    )


def _check_path(path: Path) -> bytes:
    if not path.exists():
        raise UserError(f"{path}: no such file (expected a checkpoint: {EXTENSIONS})")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; expected a checkpoint file ({EXTENSIONS})")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if not head:
        raise UserError(f"{path}: empty file (0 bytes); expected a checkpoint ({EXTENSIONS})")
    return head


def _not_a_checkpoint(path: Path, head: bytes) -> UserError:
    if head.startswith(b"\x93NUMPY"):
        what = "a numpy .npy array"
    elif head.startswith(b"\x89HDF"):
        what = "an HDF5 file (Keras/TensorFlow?)"
    elif head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        what = "a compressed archive; unpack it first"
    else:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if text and all(c.isprintable() or c.isspace() for c in text):
            snippet = " ".join(text.split())[:40]
            hint = " (an HTML page: a failed download?)" if "<" in snippet and "html" in snippet.lower() else ""
            what = f"a text file starting {snippet!r}{hint}"
        else:
            what = "an unknown binary format"
    return UserError(f"{path}: not a checkpoint: {what}; expected a PyTorch, pickle or safetensors file ({EXTENSIONS})")


def _is_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= path.stat().st_size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> RawCheckpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers and short files
        raise UserError(f"{path}: corrupt or truncated safetensors file ({str(e).splitlines()[0][:120]})") from None
    return RawCheckpoint(tensors, "safetensors", "safetensors", metadata=dict(metadata))


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals torch's weights_only loader would refuse, found by scanning the pickle opcodes (zip files)."""
    import torch

    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None:
        return None
    try:
        return list(scan(str(path)))
    except Exception:  # let torch.load report what is wrong with the file
        return None


def _torch_load(path: Path, container: str) -> RawCheckpoint:
    import torch

    unsafe = _unsafe_globals(path) if container == "torch_zip" else None
    if not unsafe:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return RawCheckpoint(obj, container, "weights_only")
        except pickle.UnpicklingError as e:
            if "Weights only load failed" not in str(e):
                raise UserError(f"{path}: truncated or corrupt PyTorch file ({str(e).splitlines()[0][:120]})") from None
            refused = re.search(r"GLOBAL ([\w.]+)", str(e))
            unsafe = [refused.group(1)] if refused else []
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
            raise UserError(f"{path}: truncated or corrupt PyTorch file ({str(e).splitlines()[0][:120]})") from None
    # weights_only refuses some global: read with the restricted unpickler instead.
    what = ", ".join(unsafe) if unsafe else "a non-tensor global"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except safe_pickle.UnsafePickleError as e:
        raise _refused(path, e) from None
    except RuntimeError as e:
        if "pickle_module" in str(e):  # TORCH_FORCE_WEIGHTS_ONLY_LOAD is set
            raise UserError(f"{path}: torch's weights_only loader refused {what} and TORCH_FORCE_WEIGHTS_ONLY_LOAD forbids the restricted reader") from None
        raise UserError(f"{path}: truncated or corrupt PyTorch file ({str(e).splitlines()[0][:120]})") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: truncated or corrupt PyTorch file ({str(e).splitlines()[0][:120]})") from None
    note = f"torch weights_only refused {what}; read with the restricted unpickler (plain objects kept as inert data, nothing executed)"
    return RawCheckpoint(obj, container, "restricted_unpickler", notes=[note])


def _read_torch_zip(path: Path) -> RawCheckpoint:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UserError(f"{path}: truncated or corrupt zip archive (PyTorch checkpoints are zip files)") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise UserError(f"{path}: a TorchScript archive (torch.jit.save), which holds code; export the model's state_dict instead")
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise UserError(f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    return _torch_load(path, "torch_zip")


def _read_pickle(path: Path) -> RawCheckpoint:
    try:
        with open(path, "rb") as f:
            unpickler = safe_pickle.Unpickler(f, encoding="latin1")
            obj = unpickler.load()
    except safe_pickle.UnsafePickleError as e:
        raise _refused(path, e) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as e:
        raise UserError(f"{path}: truncated or corrupt pickle file ({(str(e) or type(e).__name__)[:120]})") from None
    if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:
        return _torch_load(path, "torch_legacy")
    notes = []
    if unpickler.foreign_globals:
        notes.append(f"kept as inert data (never imported): {', '.join(sorted(unpickler.foreign_globals))}")
    return RawCheckpoint(obj, "pickle", "restricted_unpickler", notes=notes)


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Unpickle `path` safely, whatever its container. Raises UserError for anything unreadable."""
    path = Path(path)
    head = _check_path(path)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _read_torch_zip(path)
    if _is_safetensors(path, head):
        return _read_safetensors(path)
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return _read_pickle(path)
    raise _not_a_checkpoint(path, head)

