"""Reading and writing the weight files of a Hugging Face model directory.

A directory holds one of (in the order `transformers` prefers them):

* `model.safetensors`, or shards listed in `model.safetensors.index.json` — read with `safetensors` into numpy,
  so no torch is needed;
* `pytorch_model.bin`, or shards listed in `pytorch_model.bin.index.json` — pickles that only torch can read;
  torch is imported lazily, only for these.

Everything read comes back as `{hf_name: np.ndarray}`, floating-point tensors in float32 (fp16 / bf16 checkpoints
are widened: our params are float32, DESIGN.md §5.8). Writing produces one `model.safetensors`.

A file that cannot be read (truncated by an interrupted download, an HTML error page saved under the name, a
damaged shard index) raises `UnreadableFileError`, a ValueError whose one-line message names the file and says how
to get a good copy, instead of the reader library's traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import numpy as np
import safetensors
import safetensors.numpy

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
# Preference order, as in `transformers.PreTrainedModel.from_pretrained`.
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)
# Formats we cannot read; named in the error so the user knows what they have.
_FOREIGN_WEIGHT_FILES = ("tf_model.h5", "flax_model.msgpack", "model.ckpt.index", "rust_model.ot")

_REDOWNLOAD_HINT = ("re-download it (an interrupted download leaves a truncated file), or re-export the checkpoint "
                    "(transformers' `save_pretrained`, or `llm-jax convert --to-hf`)")


class UnreadableFileError(ValueError):
    """An input file exists but cannot be read: truncated, damaged, or not the format its name says.

    A ValueError, so that callers (and `llm-jax`'s CLI) treat it like any other bad input; the message is one line
    that names the file and says what to do.
    """


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (some libraries' span a page), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


_TORCH_INSTALL_HINT = ("install a CPU build of torch (e.g. `pip install torch==2.13.0`, pinned: an unpinned torch "
                       "may pull a multi-GB CUDA build), or convert the checkpoint once with transformers: "
                       "`AutoModel.from_pretrained(d).save_pretrained(d)` writes model.safetensors")


def find_weights_file(directory: pathlib.Path) -> pathlib.Path:
    """The weights file (or shard index) `transformers` would load from `directory`.

    Raises:
      FileNotFoundError: no supported weights file; the message lists what the directory holds instead.
    """
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    foreign = [n for n in _FOREIGN_WEIGHT_FILES if (directory / n).exists()]
    found = f" It holds {', '.join(foreign)}, which we do not read." if foreign else ""
    raise FileNotFoundError(
        f"No weights file in {directory}: looked for {', '.join(WEIGHT_FILES)}.{found} Download the PyTorch / "
        f"safetensors weights too (e.g. `huggingface_hub.snapshot_download(repo_id, allow_patterns=['*.json', "
        f"'*.safetensors'])`), or re-save the model with transformers' `save_pretrained`.")


def read_weights(directory: pathlib.Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint in `directory`, by its Hugging Face name.

    Floating-point tensors are returned as float32; integer buffers (e.g. `position_ids`) keep their dtype.
    """
    path = find_weights_file(directory)
    if path.name.endswith(".index.json"):
        return _read_sharded(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch(path)


def _read_sharded(index_path: pathlib.Path) -> dict[str, np.ndarray]:
    """Reads every shard an index names and checks that each indexed tensor was found."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnreadableFileError(f"{index_path} is not a shard index (not valid JSON: {first_line(e)}); "
                                  f"{_REDOWNLOAD_HINT}, or remove it so that the single weights file is used.") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UnreadableFileError(f"{index_path} is not a shard index (expected JSON with a 'weight_map' object of "
                                  f"tensor name → shard file); {_REDOWNLOAD_HINT}, or remove it so that the single "
                                  f"weights file is used.")
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index_path} lists the shard {shard}, which is not in {index_path.parent}; "
                                    f"download every shard of the checkpoint (or remove the index to use a single "
                                    f"weights file).")
        read = _read_safetensors if shard_path.suffix == ".safetensors" else _read_torch
        tensors.update(read(shard_path))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise UnreadableFileError(f"{index_path} lists {len(absent)} tensor(s) that its shards lack, e.g. "
                                  f"{absent[:5]}; the shards and the index come from different versions of the "
                                  f"checkpoint: {_REDOWNLOAD_HINT}.")
    return tensors


def _widen(array: np.ndarray) -> np.ndarray:
    """float32 for every floating dtype (fp16, fp64); other dtypes unchanged."""
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A safetensors file into numpy, without torch.

    numpy has no bfloat16 (nor float8), so `safetensors`' numpy reader refuses those tensors; they are read
    through its JAX reader on the host CPU instead and widened to float32.
    """
    tensors: dict[str, np.ndarray] = {}
    exotic: list[str] = []
    # Why catch broadly: the Rust reader raises its own `SafetensorError` (a bare Exception subclass) for a short
    # or foreign file ("incomplete metadata, file not fully covered", "header too large"), and OSError for I/O.
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                try:
                    tensors[name] = _widen(f.get_tensor(name))
                except TypeError:  # "data type 'bfloat16' not understood"
                    exotic.append(name)
        if exotic:
            import jax  # Only for bf16 / fp8 files; jax is a core dependency anyway.

            with jax.default_device(jax.local_devices(backend="cpu")[0]), \
                    safetensors.safe_open(str(path), framework="flax") as f:
                for name in exotic:
                    tensors[name] = np.asarray(f.get_tensor(name), dtype=np.float32)
    except Exception as e:
        raise UnreadableFileError(f"{path} is not a readable safetensors file ({first_line(e)}): it is truncated, "
                                  f"damaged or in another format; {_REDOWNLOAD_HINT}.") from e
    return tensors


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A `pytorch_model.bin` pickle into numpy (needs torch, imported only here)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path} is a PyTorch pickle, which only torch can read; {_TORCH_INSTALL_HINT}.") from e
    # weights_only: a checkpoint from the internet must not run code when unpickled.
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a short zip gives OSError, an empty file EOFError, a foreign one UnpicklingError
        raise UnreadableFileError(
            f"{path} is not a readable PyTorch state dict ({first_line(e)}): it is truncated, damaged, not a "
            f"torch.save file, or holds Python objects besides tensors (which we do not unpickle: a pickle can run "
            f"code); {_REDOWNLOAD_HINT}.") from e
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        what = type(state).__name__ if not isinstance(state, dict) else "dict with values other than tensors"
        raise UnreadableFileError(f"{path} holds a {what}, not a state dict of tensors; save the model's "
                                  f"`state_dict()` (or use transformers' `save_pretrained`).")
    tensors = {}
    for name, t in state.items():
        t = t.detach()
        tensors[name] = (t.to(torch.float32) if t.is_floating_point() else t).numpy()
    return tensors


def write_safetensors(tensors: dict[str, np.ndarray], path: pathlib.Path) -> None:
    """Writes `tensors` to `path` atomically (a crash never leaves a truncated file behind).

    Arrays are made C-contiguous first: `safetensors.numpy` writes an array's raw buffer, so a strided view (a
    transpose) would be saved scrambled without any error. The `format: pt` metadata is what `save_pretrained`
    writes; `transformers` checks it when loading.
    """
    contiguous = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        safetensors.numpy.save_file(contiguous, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
