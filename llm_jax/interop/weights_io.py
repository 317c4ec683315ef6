"""Reading and writing the weight files of a Hugging Face model directory.

A directory holds one of (in the order `transformers` prefers them):

* `model.safetensors`, or shards listed in `model.safetensors.index.json` — read with `safetensors` into numpy,
  so no torch is needed;
* `pytorch_model.bin`, or shards listed in `pytorch_model.bin.index.json` — pickles that only torch can read;
  torch is imported lazily, only for these.

Everything read comes back as `{hf_name: np.ndarray}`, floating-point tensors in float32 (fp16 / bf16 checkpoints
are widened: our params are float32, DESIGN.md §5.8). Writing produces one `model.safetensors`.
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
        weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{index_path} is not a shard index (expected JSON with a 'weight_map' object): {e}. "
                         f"Re-download it or remove it so that the single weights file is used.") from e
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index_path.name} lists the shard {shard}, which is not in {index_path.parent}; "
                                    f"download every shard of the checkpoint.")
        read = _read_safetensors if shard_path.suffix == ".safetensors" else _read_torch
        tensors.update(read(shard_path))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise ValueError(f"{index_path.name} lists {len(absent)} tensor(s) that its shards lack, e.g. {absent[:5]}; "
                         f"the shards and the index come from different versions of the checkpoint.")
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
    return tensors


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A `pytorch_model.bin` pickle into numpy (needs torch, imported only here)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path} is a PyTorch pickle, which only torch can read; {_TORCH_INSTALL_HINT}.") from e
    # weights_only: a checkpoint from the internet must not run code when unpickled.
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; save the model's "
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
