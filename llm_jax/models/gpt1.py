"""GPT-1 (Radford et al., 2018, "Improving Language Understanding by Generative Pre-Training").

Builds on `llm_jax.models.gpt` (GPT-2/3): the same decoder-only Transformer — causal self-attention, the MLP, token
+ learned position embeddings, the LM head tied to the token embedding, the KV cache. What differs (§4.1, Hugging
Face `OpenAIGPTLMHeadModel`):
* post-LN layers, as the original Transformer: `LN(x + Attn(x))`, then `LN(h + MLP(h))`; no final norm;
* every weight starts at N(0, 0.02²) (no depth-scaled residual init, which GPT-2 introduced);
* 12 layers of 768 with 12 heads and a 3072-wide MLP (HF fixes it at 4·D), a 512-token context, GELU in its tanh
  form (the original code's, HF `afn="gelu"`);
* a lower-cased BPE of 40,000 merges whose word-final pieces end in `</w>` (40,478 tokens).
Our pretraining packs documents with an end-of-document token between them (`objectives/clm.py`), as GPT-2/3 did;
the paper trained on BooksCorpus as contiguous text and its published vocabulary has no such token, so the
tokenizer trained here adds one (`<|endoftext|>`) after `<unk>`.

Fine-tuning (§3.3, Figure 1) uses task-specific input transformations — `INPUT_FORMAT`, which
`llm_jax.data.input_format` and `llm_jax.models.heads` read:
* classification: `_start_ text _classify_`; entailment (any asymmetric pair): `_start_ premise _delimiter_
  hypothesis _classify_`; multiple choice: `_start_ context _delimiter_ answer _classify_` per choice, a softmax
  over the choices' scores; similarity (a symmetric pair, `TaskSpec.symmetric`): both orders, each run through the
  model, the two final-token states added element-wise before the linear output layer;
* the three tokens, spelled as in the original fine-tuning code (finetune-transformer-lm's `train.py`; the paper
  writes start, delimiter `$` and extract), are added to the vocabulary when the tokenizer lacks them, after its
  last id; their embedding rows start at N(0, 0.02²) like that code's `np.random.randn(n_special, n_embd) * 0.02`
  (Hugging Face's `resize_token_embeddings` would draw them around the mean of the old rows instead);
* the classifier is a bias-free linear layer on the last token's state, after dropout 0.1 (§4.1; `sequence_head`);
* an auxiliary LM loss on the transformed inputs with λ = 0.5 (§3.2, §4.1: `FINETUNE_TRAIN`; `train.aux_lm_weight`).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from llm_jax.data.tokenizer import GPT1_ROLES, GPT1_SPECIALS, GPT1_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import LayerNorm
from llm_jax.models import gpt
from llm_jax.models.family import InputFormat
from llm_jax.sharding import BATCH, EMBED, SEQ, shard

Output = gpt.Output
positions_from_mask = gpt.positions_from_mask

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(gpt.Config):
    """GPT-1 hyperparameters: GPT-2's fields with GPT-1's values; no banded layers and no end-of-text id in the
    published model (HF `OpenAIGPTConfig`: `n_embd`, `n_layer`, `n_head`, `n_positions`, `afn`)."""

    vocab_size: int = 40478
    max_position_embeddings: int = 512

    def validate(self) -> Config:
        super().validate()
        if self.attention_window:
            raise ValueError(f"model.attention_window={self.attention_window}: GPT-1 attends densely in every layer; "
                             "banded layers are GPT-3's (use configs/gpt.py:version=3).")
        return self


# Radford et al. 2018 §4.1 (HF openai-gpt: 116,534,784 parameters, reference/figures.md §1.4); tiny for CPU runs.
PRESETS: dict[str, Config] = {
    "gpt1": Config(),
    "gpt1-tiny": Config(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
}

# ---------------------------------------------------------------------------------------------- modules


class Block(nn.Module):
    """One post-LN decoder layer (§4.1, HF `Block`): `n = LN(x + Attn(x))`, then `LN(n + MLP(n))`."""

    cfg: Config
    decode: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, is_local=None):
        del is_local  # GPT-1 has no banded layers
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        drop = nn.Dropout(cfg.hidden_dropout)
        a_BTD = gpt.attention(cfg, self.decode, gpt.init(cfg))(x_BTD, mask_BHTS=mask_BHTS,
                                                               deterministic=self.deterministic)
        n_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ln_1")(x_BTD + drop(a_BTD, deterministic=self.deterministic))
        m_BTD = gpt.mlp(cfg, gpt.init(cfg))(n_BTD)
        h_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ln_2")(n_BTD + drop(m_BTD, deterministic=self.deterministic))
        return shard(h_BTD, BATCH, SEQ, EMBED)


class OpenAIGPTModel(gpt.GptModel):
    """GPT-2's trunk with GPT-1's post-LN layers and no final norm (HF `OpenAIGPTModel`); the same call contract."""

    BLOCK = Block
    FINAL_NORM = False


class OpenAIGPTLMHeadModel(gpt.GptLMHeadModel):
    """GPT-1's trunk + the tied LM head (HF `OpenAIGPTLMHeadModel`)."""

    TRUNK = OpenAIGPTModel


# ------------------------------------------------------------------------------------- family contract

NAME = "gpt1"
PRETRAINING_MODEL = OpenAIGPTLMHeadModel
DEFAULT_OBJECTIVE = "clm"
LM_KIND = "causal"
EOD = "<|endoftext|>"
# openai-gpt's lower-cased `</w>` BPE (<unk> only), plus the document delimiter our pretraining packs with.
TOKENIZER = dataclasses.replace(GPT1_TOKENIZER, special_tokens=(*GPT1_SPECIALS, EOD),
                                roles=types.MappingProxyType({**GPT1_ROLES, "eod": EOD}))
INPUT_FORMAT = InputFormat(
    pad_side="right", classifier_token=True, both_orders=True, template="start_delim_extract",
    task_tokens=(("bos", "_start_"), ("sep", "_delimiter_"), ("cls", "_classify_")))
TRUNK_NAME = "transformer"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("transformer/decoder/stack/layers/block/mlp",)}
sequence_head = gpt.sequence_head
# Bias tests: as GPT-2's (a pretrained GPT-1 has no extract token yet; its last real token's state stands in).
TOKEN_EMBEDDING = gpt.TOKEN_EMBEDDING
pooled_features = gpt.pooled_features
# Decoding (optional members, `llm_jax.generate`): GPT-2's decoder steps run GPT-1's module.
init_decode_state, decode_step = gpt.decoding_for(OpenAIGPTLMHeadModel)
reorder_decode_state = gpt.reorder_decode_state
stop_token_ids = gpt.stop_token_ids


def build_trunk(cfg: Config, kind: str, **kwargs) -> OpenAIGPTModel:
    """The decoder every fine-tuning head sits on (§3.3: the task heads read its final activations)."""
    del kind
    return OpenAIGPTModel(cfg, **kwargs)


def FINETUNE_TRAIN(cfg: Config) -> dict[str, Any]:  # noqa: N802 (a family attribute, read by configs/finetune.py)
    """§4.1's fine-tuning settings: the auxiliary LM loss at λ = 0.5, warmup over 0.2 % of training."""
    del cfg
    return {"aux_lm_weight": 0.5, "warmup_ratio": 0.002}


def FINETUNE_OPTIM(cfg: Config) -> dict[str, Any]:  # noqa: N802 (a family attribute, read by configs/finetune.py)
    """§4.1 (and the original code's defaults): Adam with ε = 1e-8 and, at GPT-1's width, learning rate 6.25e-5
    (smaller CPU models keep the recipe's width-based rate); weight decay 0.01 and clipping at 1 are the recipe's."""
    return {"eps": 1e-8, **({"learning_rate": 6.25e-5} if cfg.hidden_size >= 768 else {})}


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """GPT-2's decoder tower without the final norm."""
    del heads
    return (gpt.decoder_tower(cfg, seq_len, predicted_positions, final_norm=False),)


# ---------------------------------------------------------------------------------------- HF name map
# The same layer names and Conv1D layouts as GPT-2's (`gpt.layer_map`); the embeddings are named differently.

HF_NAME_MAP: dict[str, tuple] = {
    "transformer/embeddings/word_embeddings/embedding": ("transformer.tokens_embed.weight", "embed"),
    "transformer/embeddings/position_embeddings/embedding": ("transformer.positions_embed.weight", "embed"),
    **gpt.layer_map("transformer.h.{L}"),
}
HF_ARCHITECTURE = "OpenAIGPTLMHeadModel"
HF_MODEL_TYPE = "openai-gpt"
HF_BASE_PREFIX = "transformer"
HF_TIED_WEIGHTS: dict[str, str] = {"lm_head.weight": "transformer.tokens_embed.weight"}
HF_IGNORED: tuple[str, ...] = (r"(^|\.)h\.\d+\.attn\.bias$", r"(^|\.)position_ids$")
HF_INIT_IF_MISSING: tuple[str, ...] = ()

# HF `afn` ↔ our activation names: OpenAIGPT's "gelu" is the tanh form (`gelu_new`), its "silu"/"swish" are SiLU.
_AFN_TO_OURS = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}
_OURS_TO_AFN = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `OpenAIGPTConfig` dict.

    Raises:
      ValueError: an activation HF's OpenAIGPT does not define, or an untied LM head.
    """
    afn = hf.get("afn", "gelu")
    if afn not in _AFN_TO_OURS:
        raise ValueError(f"afn={afn!r} is not an OpenAIGPT activation; expected one of {sorted(_AFN_TO_OURS)}.")
    if hf.get("tie_word_embeddings", True) is False:
        raise ValueError("tie_word_embeddings=false: our GPT-1 ties the LM head to the token embedding.")
    width = hf["n_embd"]
    return Config(
        vocab_size=hf["vocab_size"], hidden_size=width, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        intermediate_size=4 * width, max_position_embeddings=hf["n_positions"], hidden_act=_AFN_TO_OURS[afn],
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), initializer_range=hf.get("initializer_range", 0.02),
        hidden_dropout=hf.get("resid_pdrop", 0.1), attention_dropout=hf.get("attn_pdrop", 0.1),
        eos_token_id=gpt.eos_from_hf(hf),
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `OpenAIGPTConfig` dict for our Config.

    Raises:
      ValueError: an MLP width other than 4·D (HF's OpenAIGPT fixes it) or an activation it lacks (exact GELU).
    """
    if cfg.intermediate_size != 4 * cfg.hidden_size:
        raise ValueError(f"model.intermediate_size={cfg.intermediate_size}: Hugging Face's OpenAIGPT fixes the MLP at "
                         f"4 × hidden_size = {4 * cfg.hidden_size}, so this model cannot be written in its format.")
    if cfg.hidden_act not in _OURS_TO_AFN:
        raise ValueError(f"model.hidden_act={cfg.hidden_act!r} has no OpenAIGPT `afn` (its 'gelu' is the tanh form, "
                         f"our 'gelu_new'); choose one of {sorted(_OURS_TO_AFN)} to export.")
    out = {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "n_embd": cfg.hidden_size, "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
        "n_positions": cfg.max_position_embeddings, "afn": _OURS_TO_AFN[cfg.hidden_act],
        "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": cfg.initializer_range,
        "resid_pdrop": cfg.hidden_dropout, "embd_pdrop": cfg.hidden_dropout, "attn_pdrop": cfg.attention_dropout,
        "tie_word_embeddings": True,
    }
    if cfg.eos_token_id is not None:
        out["eos_token_id"] = cfg.eos_token_id
    return out
