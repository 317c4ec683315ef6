"""Hugging Face interop: checkpoints (`config.json` + safetensors) and tokenizers in and out.

    family, config, params = load_hf("path/to/bert-base-uncased")
    model = llm_jax.models.build(family, config)
    out = model.apply({"params": params}, tokens_BT, segment_ids_BT=segments_BT, mask_BT=mask_BT)
    save_hf(family, config, params, "out/dir", tokenizer=load_hf_tokenizer("path/to/bert-base-uncased"))

Modules: `hf` (directories and config.json), `state_dict` (name maps and tensor layouts), `weights_io`
(safetensors / PyTorch files), `tokenizer` (tokenizer files). Parity with `transformers` is checked in
`tests/interop`.
"""

from llm_jax.interop.hf import (LoadedCheckpoint, family_for_model_type, load_hf, load_hf_with_report,
                                read_hf_config, save_hf)
from llm_jax.interop.state_dict import LoadReport, from_hf_state_dict, to_hf_state_dict
from llm_jax.interop.tokenizer import load_hf_tokenizer

__all__ = [
    "LoadReport", "LoadedCheckpoint", "family_for_model_type", "from_hf_state_dict", "load_hf", "load_hf_tokenizer",
    "load_hf_with_report", "read_hf_config", "save_hf", "to_hf_state_dict",
]
