"""Hugging Face interop: checkpoints (`config.json` + safetensors) and tokenizers in and out.

    family, config, params = load_hf("path/to/bert-base-uncased")
    model = llm_jax.models.build(family, config)
    out = model.apply({"params": params}, tokens_BT, segment_ids_BT=segments_BT, mask_BT=mask_BT)
    save_hf(family, config, params, "out/dir", tokenizer=load_hf_tokenizer("path/to/bert-base-uncased"))

Modules: `hf` (directories and config.json), `state_dict` (name maps and views), `layouts` (the tensor-layout
registry and `HfView`), `weights_io` (safetensors / PyTorch files), `tokenizer` (tokenizer files), `native` (our
own model and run directories). Parity with `transformers` is checked in `tests/interop`.

The names below are imported on first use (PEP 562): family files import `llm_jax.interop.layouts` (to register a
layout or declare `HfView`s) while `llm_jax.models` is still being imported, and an eager import of `hf` here,
which imports `llm_jax.models`, would make that a circular import.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoadedCheckpoint": "hf", "family_for_hf_config": "hf", "family_for_model_type": "hf", "load_hf": "hf",
    "load_hf_with_report": "hf", "read_hf_config": "hf", "save_hf": "hf",
    "HfView": "layouts", "Layout": "layouts", "register_layout": "layouts",
    "LoadReport": "state_dict", "from_hf_state_dict": "state_dict", "from_hf_views": "state_dict",
    "to_hf_state_dict": "state_dict",
    "UnreadableFileError": "weights_io",
    "load_hf_tokenizer": "tokenizer",
}
_SUBMODULES = ("hf", "layouts", "native", "state_dict", "tokenizer", "weights_io")


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in _SUBMODULES:  # `from llm_jax.interop import state_dict` before anything imported it
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, *_SUBMODULES, *globals()])


__all__ = ["HfView", "Layout", "LoadReport", "LoadedCheckpoint", "UnreadableFileError", "family_for_hf_config",
           "family_for_model_type", "from_hf_state_dict", "from_hf_views", "load_hf", "load_hf_tokenizer",
           "load_hf_with_report", "read_hf_config", "register_layout", "save_hf", "to_hf_state_dict"]
