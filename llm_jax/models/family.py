"""The family contract: what every model family module provides, and the config base the trainer relies on.

Module conventions the trainer relies on: every module keeps its Config as `cfg`; `__call__` follows the model
contract (DESIGN §5.5: `tokens_BT`, keyword `segment_ids_BT`, `positions_BT`, `mask_BT`, `deterministic`, plus
what the family's objectives pass) and returns a dataclass with `hidden_BTD`; a masked LM (`LM_KIND="masked"`)
takes `mlm_positions_BP`, returns `mlm_logits_BTV` and keeps its MLM head under `mlm_head` (the cloze scorer
reads it); a causal LM's pretraining model returns next-token `logits_BTV` (the scorers and
perplexity of `llm_jax.eval.score` read them).

A family is one file in `llm_jax/models/` plus one line in the registry (`models/__init__.py`). Code outside
`models/` reaches a family only through the names below — it never branches on a family's name or reads a field
that only some families' configs have. `check_family` verifies a module against the contract (a test runs it
over the registry).

| name | what it is |
|---|---|
| `NAME` | the registry key (`"bert"`) |
| `Config` | a frozen dataclass deriving from `CommonConfig` (HF's hyperparameter names) |
| `PRESETS` | preset name → Config (citing the paper's table) |
| `PRETRAINING_MODEL` | the Flax module its pretraining objective trains (`model.apply(...)` per DESIGN §5.5) |
| `DEFAULT_OBJECTIVE` | the registered objective name of its original recipe |
| `LM_KIND` | one of `LM_KINDS`: how it scores text (masked, causal, seq2seq, permutation) |
| `TOKENIZER` | a `TokenizerSpec`: the kind it trains, its special tokens and role → token map, input template, HF class |
| `INPUT_FORMAT` | how a task input is laid out (`InputFormat`, `llm_jax.data.input_format`): which side it pads, whether its classifier reads a template's token or the last real token, the task tokens and template fine-tuning adds (GPT-1's start / delimiter / extract), whether symmetric pairs run in both orders |
| `TRUNK_NAME`, `build_trunk(cfg, kind, **module_kwargs)` | the encoder the fine-tuning heads sit on (built with `name=TRUNK_NAME`, the pretraining model's subtree name, so pretrained weights transplant); its output has `hidden_BTD` (and what its `sequence_head` reads) |
| `sequence_head(cfg, trunk_out, *, kind, num_outputs, dropout, deterministic)` | pooling + output layer of its sequence classifiers (HF's `…ForSequenceClassification` / `…ForMultipleChoice`) |
| `FINETUNE_TRAIN(cfg) -> dict` (optional) | `train` settings of its own fine-tuning recipe that `configs/finetune.py` applies (GPT-1's auxiliary LM weight, §3.2); a causal family's trunk has `attend(hidden_BTD) -> logits_BTV` (its tied LM head), which that loss reads |
| `towers(cfg, seq_len, *, predicted_positions, heads)` | its stacks as `llm_jax.flops.Tower`s |
| `Config.memory_shape(mem_len) -> (L, M, D)` (optional) | one row's memory of `mem_len` slots, for an objective that carries memory across steps (`init_carry`; XLNet's `plm`) without reading the family's own field names |
| `FINETUNE_OPTIM(cfg) -> dict` (optional) | optimizer settings of its own fine-tuning recipe that `configs/finetune.py` applies (ELECTRA's layer-wise LR decay) |
| `params_from(parent, parent_cfg, params, cfg) -> (cfg, params)` (optional) | how it starts from another family's weights (`model.init_from`), e.g. DistilBERT from alternate BERT layers |
| `init_decode_state(cfg, params, tokens_BT, mask_BT, max_new_tokens) -> (state, logits_BV)`, `decode_step(cfg, params, state, tokens_B) -> (state, logits_BV)`, `reorder_decode_state(state, rows_R) -> state`, `stop_token_ids(cfg) -> tuple[int, ...]` (optional, all four or none) | its decoder steps, which `llm_jax.generate` drives (greedy, sampling, beam search): see "Decoder steps" below |
| `target_logits(cfg, params, tokens_BS, mask_BS, targets_BT) -> logits_BTV` (optional; seq2seq) | teacher forcing: float32 logits predicting the targets given the source (the decoder reads the targets shifted right behind its start token); `llm_jax.eval.score` scores targets with it |
| `replaced_token_logits(cfg, params, tokens_BT, mask_BT) -> logits_BT` (optional) | a replaced-token detector's float32 logits (> 0: replaced; ELECTRA's discriminator), which `llm_jax.eval.score` reads as how original a text looks (the discriminator zero-shot scorer) |
| `Config.init_memory(batch_size) -> dict`, `Config.with_memory(*, mem_len, clamp_len, same_length) -> Config` (optional) | a segment-recurrent family (Transformer-XL): the memory a run's carry starts from (batch-major leaves, what `segment_clm`'s `init_carry` returns) and the Config with other evaluation memory settings (`llm_jax.eval.recurrent`); its pretraining module then takes `memory=` and `labels_BT=` and returns `nll_BT` and the next `memory` |
| `text_to_text_inputs(cfg, tokens_BT, mask_BT, targets_BT) -> (args, kwargs)` (optional; needs the decoding members) | the family fine-tunes text to text (T5 §2.4, `llm_jax.train.text_to_text`): the `PRETRAINING_MODEL` call whose `logits_BTV` predict the target tokens by teacher forcing (an encoder-decoder's decoder reads the targets shifted right behind its start token); generated text is mapped back to labels |
| `TOKEN_EMBEDDING`, `pooled_features(cfg, trunk_out) -> [B, D]` (optional, both or none) | what the bias tests (`llm_jax.eval.embeddings`) read: the path of the input token-embedding table `[V, E]` inside the trunk's params (`params[TRUNK_NAME]`), and the sentence vector its sequence classifiers read, up to the first layer that fine-tuning adds (BERT's pretrained pooler; the first token's state for RoBERTa/ELECTRA/DistilBERT, whose classifier layers are all new; GPT's last real token; T5's decoder state at the last `</s>`), from the output of `build_trunk(cfg, "classification", collect_hidden=True)`, which then holds every layer's output in `all_hidden_LBTD` (an encoder-decoder: its encoder's) |
| `FFN_BLOCKS` (optional) | neuron pruning (`llm_jax.compression.pruning`): FFN width field of the Config (an int, `"intermediate_size"`) → the paths ('/'-joined, in `PRETRAINING_MODEL`'s params) of the `llm_jax.layers.Mlp` modules of that width (`wi` or gated `wi_0`/`wi_1`, and `wo`; under a scanned stack with a leading `[L]` axis or shared, without); a family without it cannot have its FFN units removed |
| `HF_MODEL_TYPE`, `config_from_hf`, `config_to_hf`, and `HF_NAME_MAP`, `HF_ARCHITECTURE`, `HF_BASE_PREFIX`, `HF_TIED_WEIGHTS`, `HF_IGNORED`, `HF_INIT_IF_MISSING` (one checkpoint) or `HF_VIEWS` (several) | the Hugging Face checkpoint mapping (`llm_jax.interop`); absent for a family with no published checkpoint |

Decoder steps (the optional decoding members). `llm_jax.generate` runs one jitted loop for every family that
generates text, and knows nothing else about it:
* `init_decode_state` is the prefill. It takes the prompts left-padded (`tokens_BT`, `mask_BT`: every row's last
  token is real) and how many tokens will be generated, builds whatever the family decodes from — a decoder-only
  model's KV cache filled with the prompt; an encoder-decoder's encoder output, its cross-attention cache and an
  empty self-attention cache fed the decoder's start token — and returns it with the float32 logits of the first
  new token. Its sizes follow from the shapes and `max_new_tokens` (static under jit); a prompt that does not fit
  raises a ValueError at trace time.
* `decode_step` feeds one token per row and returns the next token's logits; the state is a pytree with the same
  shapes after every step (a `lax.while_loop` carries it).
* `reorder_decode_state` returns the state of the rows `rows_R` (`[R]` int, repeats allowed): beam search expands
  each prompt's row into its beams and, after every step, continues each surviving hypothesis from its parent's
  state (`llm_jax.layers.select_cache_rows` does it for a cache collection).
* `stop_token_ids` lists the ids that end a text (its end-of-text / end-of-sequence token).
All four are pure functions of their arguments, traceable, and the same objects on every call (module attributes),
so that the loop compiles once per shape.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from llm_jax.data.input_format import PAD_SIDES, InputFormat
from llm_jax.data.tokenizer import TokenizerSpec
from llm_jax.data.tokenizers.kinds import template_roles

LM_KINDS = ("masked", "causal", "seq2seq", "permutation")

# Fields of every Config that a run may change without changing the architecture (precision, memory, speed,
# regularisation): taken from the run's config when weights come from a checkpoint.
# Values of `CommonConfig.quantization` (mirrors `llm_jax.compression.quantize.QUANTIZATIONS`).
QUANTIZATIONS = ("none", "int8-weight", "int8-dynamic")
RUNTIME_FIELDS = ("dtype", "remat", "scan_unroll", "attention_impl", "hidden_dropout", "attention_dropout")


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """The runtime fields every family's Config has (the trainer sets them; the architecture does not).

    Attributes:
      dtype: compute dtype (params stay float32; DESIGN §5.9).
      remat: a key of `llm_jax.layers.REMAT_POLICIES`.
      scan_unroll: unroll the layer scan (same `[L, …]` param layout).
      attention_impl: a key of `llm_jax.layers.ATTENTION_IMPLEMENTATIONS`.
      hidden_dropout / attention_dropout: dropout rates of the residual stream and attention probabilities.
      quantization: how the projections run — "none" (float), "int8-weight" or "int8-dynamic"
        (`llm_jax.compression.quantize`): an architecture field (the params tree is int8), not a runtime one, so a
        run's runtime settings never erase it; `llm_jax.models.build` wraps the module with qwix when it is set.
    """

    dtype: str = "float32"
    # Why no remat, an unrolled layer loop and einsum attention by default: benchmarks/NOTES.md (train steps of
    # BERT-mini/base on CPU). Recomputation only costs time where memory is not short; the rolled scan moves every
    # layer's saved activations and gradients through dynamic slices of stacked buffers, which the unrolled loop
    # does not; `jax.nn.dot_product_attention` ("xla"/"cudnn"/"auto") has no attention dropout, which BERT trains
    # with, and on CPU lowers to the same products.
    remat: str = "none"
    scan_unroll: bool = True
    attention_impl: str = "einsum"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    quantization: str = "none"

    # Members each family's Config provides (checked by `check_family`).
    REQUIRED_MEMBERS = ("validate", "max_seq_len", "width", "vocab_size", "num_token_types", "with_vocabulary",
                        "initializer_range")

    def runtime(self) -> dict[str, Any]:
        """The runtime fields as a dict (to carry over onto a Config loaded from a checkpoint)."""
        return {k: getattr(self, k) for k in RUNTIME_FIELDS}

    def validate_runtime(self) -> None:
        """Checks the runtime fields (each family's `validate` calls it).

        Raises:
          ValueError: an unknown dtype, remat policy, attention implementation or quantization, or a dropout outside
            [0, 1).
        """
        from llm_jax.layers import ATTENTION_IMPLEMENTATIONS, REMAT_POLICIES  # why lazy: layers import nothing here

        try:
            jnp.dtype(self.dtype)
        except TypeError as e:
            raise ValueError(f"model.dtype={self.dtype!r} is not a dtype ({e}); use float32, bfloat16 or "
                             "float16.") from None
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"model.remat={self.remat!r} is not a policy; choose one of {sorted(REMAT_POLICIES)}.")
        if self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"model.attention_impl={self.attention_impl!r} is not one of "
                             f"{ATTENTION_IMPLEMENTATIONS}.")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name}={getattr(self, name)} must be in [0, 1).")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"model.quantization={self.quantization!r} is not one of {QUANTIZATIONS}; "
                             "`llm-jax compress --quantize` writes int8 models.")


# name → the type (or predicate) a family module's attribute must satisfy.
_CONTRACT: dict[str, Any] = {
    "NAME": str,
    "Config": type,
    "PRESETS": dict,
    "PRETRAINING_MODEL": type,
    "DEFAULT_OBJECTIVE": str,
    "LM_KIND": str,
    "TOKENIZER": TokenizerSpec,
    "INPUT_FORMAT": InputFormat,
    "TRUNK_NAME": str,
    "build_trunk": Callable,
    "sequence_head": Callable,
    "towers": Callable,
}
# A family with a Hugging Face format: one checkpoint described by these names, or several by `HF_VIEWS`
# (`llm_jax.interop.layouts.HfView`, e.g. ELECTRA's generator and discriminator). A family with no published
# HF checkpoint (GPT-3) has neither.
_HF_CONTRACT: dict[str, Any] = {
    "HF_MODEL_TYPE": str,
    "config_from_hf": Callable,
    "config_to_hf": Callable,
}
# A family that generates text (`llm_jax.generate`) has all of these, or none.
DECODING_MEMBERS = ("init_decode_state", "decode_step", "reorder_decode_state", "stop_token_ids")
# A family that fine-tunes text to text has this member (and the decoding members).
TEXT_TO_TEXT_MEMBER = "text_to_text_inputs"
# A family whose FFN hidden units neuron pruning may remove has this member (see the table above).
FFN_BLOCKS_MEMBER = "FFN_BLOCKS"
# A family whose word and sentence vectors the bias tests read (`llm_jax.eval.embeddings`) has both, or neither.
REPRESENTATION_MEMBERS = ("TOKEN_EMBEDDING", "pooled_features")
_HF_SINGLE_VIEW: dict[str, Any] = {
    "HF_NAME_MAP": dict,
    "HF_ARCHITECTURE": str,
    "HF_BASE_PREFIX": str,
    "HF_TIED_WEIGHTS": dict,
    "HF_IGNORED": tuple,
    "HF_INIT_IF_MISSING": tuple,
}


def check_family(module: types.ModuleType) -> list[str]:
    """What `module` lacks of the family contract: a list of one-line problems (empty = it satisfies it)."""
    problems = []
    contract = dict(_CONTRACT)
    if hasattr(module, "HF_VIEWS"):
        contract.update(_HF_CONTRACT)
    elif hasattr(module, "HF_NAME_MAP"):
        contract.update(_HF_CONTRACT, **_HF_SINGLE_VIEW)
    for name, kind in contract.items():
        if not hasattr(module, name):
            problems.append(f"{module.__name__} lacks {name}")
        elif not isinstance(getattr(module, name), kind):
            problems.append(f"{module.__name__}.{name} is a {type(getattr(module, name)).__name__}, not a "
                            f"{getattr(kind, '__name__', kind)}")
    decoding = [name for name in DECODING_MEMBERS if hasattr(module, name)]
    if decoding and len(decoding) < len(DECODING_MEMBERS):
        problems.append(f"{module.__name__} has {decoding} but lacks "
                        f"{[n for n in DECODING_MEMBERS if n not in decoding]}: the decoding members come together")
    problems += [f"{module.__name__}.{name} is not callable" for name in decoding
                 if not callable(getattr(module, name))]
    if hasattr(module, TEXT_TO_TEXT_MEMBER) and (not decoding or not callable(getattr(module, TEXT_TO_TEXT_MEMBER))):
        problems.append(f"{module.__name__}.{TEXT_TO_TEXT_MEMBER} must be callable and needs the decoding members "
                        f"{DECODING_MEMBERS}: text-to-text evaluation decodes")
    representation = [name for name in REPRESENTATION_MEMBERS if hasattr(module, name)]
    if representation and len(representation) < len(REPRESENTATION_MEMBERS):
        problems.append(f"{module.__name__} has {representation} but lacks "
                        f"{[n for n in REPRESENTATION_MEMBERS if n not in representation]}: they come together")
    if hasattr(module, "TOKEN_EMBEDDING") and not (
            isinstance(module.TOKEN_EMBEDDING, tuple) and all(isinstance(k, str) for k in module.TOKEN_EMBEDDING)):
        problems.append(f"{module.__name__}.TOKEN_EMBEDDING must be a tuple of param names (a path in the trunk)")
    if hasattr(module, "pooled_features") and not callable(module.pooled_features):
        problems.append(f"{module.__name__}.pooled_features is not callable")
    if hasattr(module, FFN_BLOCKS_MEMBER):
        blocks = getattr(module, FFN_BLOCKS_MEMBER)
        if not (isinstance(blocks, dict) and blocks and all(
                isinstance(k, str) and isinstance(v, tuple) and v and all(isinstance(p, str) for p in v)
                for k, v in blocks.items())):
            problems.append(f"{module.__name__}.{FFN_BLOCKS_MEMBER} must map FFN width fields to non-empty tuples of "
                            "Mlp module paths")
        elif hasattr(module, "Config") and dataclasses.is_dataclass(module.Config):
            ints = {f.name for f in dataclasses.fields(module.Config) if f.type in (int, "int")}
            problems += [f"{module.__name__}.{FFN_BLOCKS_MEMBER} names {k!r}, which is no int field of its Config"
                         for k in blocks if k not in ints]
    if problems:
        return problems
    if not issubclass(module.Config, CommonConfig):
        problems.append(f"{module.__name__}.Config does not derive from llm_jax.models.family.CommonConfig")
    for member in CommonConfig.REQUIRED_MEMBERS:
        if not hasattr(module.Config, member) and member not in {f.name for f in dataclasses.fields(module.Config)}:
            problems.append(f"{module.__name__}.Config lacks {member}")
    try:
        inspect.signature(module.build_trunk).bind(None, "classification", name=module.TRUNK_NAME)
    except TypeError:
        problems.append(f"{module.__name__}.build_trunk does not take (cfg, kind, name=...)")
    if module.LM_KIND not in LM_KINDS:
        problems.append(f"{module.__name__}.LM_KIND={module.LM_KIND!r} is not one of {LM_KINDS}")
    fmt = module.INPUT_FORMAT
    if fmt.template is not None:  # every token the fine-tuning template places has a role
        given = set(module.TOKENIZER.roles) | {role for role, _ in fmt.task_tokens}
        lacking = [r for r in template_roles(fmt.template) if r not in given]
        if lacking:
            problems.append(f"{module.__name__}.INPUT_FORMAT's template {fmt.template!r} needs the roles {lacking}, "
                            "which neither TOKENIZER.roles nor INPUT_FORMAT.task_tokens give")
    for name, cfg in module.PRESETS.items():
        if not isinstance(cfg, module.Config):
            problems.append(f"preset {name!r} is not a {module.__name__}.Config")
    return problems


__all__ = ["CommonConfig", "DECODING_MEMBERS", "FFN_BLOCKS_MEMBER", "InputFormat", "LM_KINDS", "PAD_SIDES",
           "REPRESENTATION_MEMBERS", "RUNTIME_FIELDS", "TEXT_TO_TEXT_MEMBER", "check_family"]
