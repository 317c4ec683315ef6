"""ELECTRA (Clark et al., 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators").

A small masked-LM **generator** and a **discriminator** trained together by replaced-token detection (§2): the
generator fills masked positions with samples, the discriminator tells every token whether it was replaced
(`llm_jax.objectives.rtd`). Both are BERT encoders (`bert.Layer`, post-LN); what differs (§2, §3.2, Appendix A,
Hugging Face `ElectraForPreTraining` + `ElectraForMaskedLM`):

* the two share the **whole embedding block** (§3.2 "Weight Sharing": word, position and token-type tables and
  their LayerNorm; google-research/electra shares the `electra/embeddings` scope), of width E (128 for small);
  each tower projects E → its own width with its own `embeddings_project` when they differ (HF has the layer
  only then);
* the generator is narrower (§3.2, "Smaller Generators"; `configure_pretraining.py`): hidden ¼ of the
  discriminator's for small (paper) and large, ⅓ for base, feed-forward 4 × its hidden, max(1, hidden / 64)
  heads; the released small model used a full-size generator (its README), preset `electra-small`;
  `electra-small-paper` is the paper's Table 1 model with a 64-wide generator;
* generator MLM head (HF `generator_predictions` + `generator_lm_head`): dense → exact GELU → LayerNorm(E) →
  decoder tied to the shared word embeddings + bias, at the masked positions only;
* discriminator head (HF `discriminator_predictions`): dense D → D → `hidden_act` → dense D → 1 logit per token;
* no pooler: sequence classifiers read the first token through a dense + GELU layer (HF
  `ElectraClassificationHead`).

One Flax module holds both towers and one params tree (DESIGN.md §5.6): the discriminator trunk under `electra`
(what fine-tuning keeps, `TRUNK_NAME`), its head under `discriminator_predictions`, the generator under
`generator` and its MLM head under `mlm_head` (so the cloze scorer reads the generator). It is published as two
Hugging Face checkpoints (`HF_VIEWS`): `discriminator` and `generator`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import BERT_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.interop.layouts import HfView
from llm_jax.layers import Einsum, activation, padding_mask
from llm_jax.models import albert, bert, roberta
from llm_jax.sharding import BATCH, EMBED, SEQ, P_EMBED, shard

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(bert.Config):
    """ELECTRA hyperparameters: the discriminator's BERT fields (HF names), the shared embedding width E and the
    generator's sizes.

    Attributes:
      embedding_size: E, the width of the shared embeddings (HF `embedding_size`).
      generator_hidden_size / generator_num_layers / generator_num_heads / generator_intermediate_size: the
        generator's width, depth, heads and feed-forward width (its HF config's `hidden_size`,
        `num_hidden_layers`, `num_attention_heads`, `intermediate_size`); everything else is shared.
    """

    embedding_size: int = 768
    generator_hidden_size: int = 256
    generator_num_layers: int = 12
    generator_num_heads: int = 4
    generator_intermediate_size: int = 1024

    @property
    def embed_dim(self) -> int:
        """E."""
        return self.embedding_size

    def generator_config(self) -> "Config":
        """The generator as a Config of its own: the generator's sizes in the BERT fields."""
        return dataclasses.replace(self, hidden_size=self.generator_hidden_size, num_layers=self.generator_num_layers,
                                   num_heads=self.generator_num_heads,
                                   intermediate_size=self.generator_intermediate_size)

    def validate(self) -> "Config":
        super().validate()
        for name in ("embedding_size", "generator_hidden_size", "generator_num_layers", "generator_num_heads",
                     "generator_intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if self.generator_hidden_size % self.generator_num_heads:
            raise ValueError(f"model.generator_hidden_size={self.generator_hidden_size} is not divisible by "
                             f"model.generator_num_heads={self.generator_num_heads}; pick a head count that divides "
                             "the generator's width.")
        return self


def with_generator(cfg: Config, hidden_fraction: float, layers_fraction: float = 1.0) -> Config:
    """`cfg` with the generator sized as google-research/electra's `get_generator_config` does: hidden =
    round(fraction × D), layers = round(fraction × L), feed-forward 4 × hidden, heads max(1, hidden // 64)."""
    hidden = int(round(cfg.hidden_size * hidden_fraction))
    return dataclasses.replace(cfg, generator_hidden_size=hidden,
                               generator_num_layers=int(round(cfg.num_layers * layers_fraction)),
                               generator_num_heads=max(1, hidden // 64), generator_intermediate_size=4 * hidden)


_SMALL = Config(embedding_size=128, hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024)
_LARGE = Config(embedding_size=1024, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
# Clark et al. 2020 Table 6 / `configure_pretraining.py` (discriminator sizes; generator multipliers ¼ small and
# large, ⅓ base) and the released checkpoints (small: a full-size generator, README). mini / tiny are CPU shapes.
PRESETS: dict[str, Config] = {
    "electra-small": with_generator(_SMALL, 1.0),
    "electra-small-paper": with_generator(_SMALL, 0.25),
    "electra-base": with_generator(Config(), 1 / 3),
    "electra-large": with_generator(_LARGE, 0.25),
    "electra-mini": with_generator(Config(embedding_size=128, hidden_size=256, num_layers=4, num_heads=4,
                                          intermediate_size=1024), 0.25),
    # Two 16-wide generator heads rather than the rule's one, so that tensor parallelism has heads to split.
    "electra-tiny": dataclasses.replace(with_generator(Config(embedding_size=64, hidden_size=128, num_layers=2,
                                                              num_heads=2, intermediate_size=512), 0.25),
                                        generator_num_heads=2),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What the ELECTRA modules return.

    Attributes:
      hidden_BTD: the discriminator's last hidden states (the generator's, from `run_generator`).
      mlm_logits_BTV: the generator's logits, `[B, P, V]` at `mlm_positions_BP` when given.
      rtd_logits_BT: the discriminator's replaced-token logits (> 0: "replaced").
      generator_hidden_BTD: the generator's last hidden states (`__call__` only).
      pooled_BD: always None (ELECTRA has no pooler; kept for the BERT trunk's output contract).
      all_hidden_LBTD: every layer's output when `collect_hidden`.
    """

    hidden_BTD: jax.Array
    pooled_BD: jax.Array | None = None
    mlm_logits_BTV: jax.Array | None = None
    rtd_logits_BT: jax.Array | None = None
    generator_hidden_BTD: jax.Array | None = None
    all_hidden_LBTD: jax.Array | None = None


def _init(cfg: Config):
    return nn.initializers.normal(cfg.initializer_range)


class Encoder(bert.Encoder):
    """`embeddings_project` (E → D, only when E ≠ D) → BERT's layer stack: one tower (HF `ElectraModel` minus
    its embeddings)."""

    cfg: Config

    @nn.compact
    def __call__(self, x_BTE, mask_BHTS, deterministic: bool):
        """`[B, T, E]` → (`[B, T, D]`, every layer's output `[L, B, T, D]` or None)."""
        cfg = self.cfg
        if cfg.embedding_size != cfg.hidden_size:
            x_BTE = Einsum("BTE,ED->BTD", (cfg.embedding_size, cfg.hidden_size), (None, P_EMBED),
                           kernel_init=_init(cfg), dtype=jnp.dtype(cfg.dtype), name="embeddings_project")(x_BTE)
            x_BTE = shard(x_BTE, BATCH, SEQ, EMBED)
        return super().__call__(x_BTE, mask_BHTS, deterministic)


class ElectraModel(bert.BertModel):
    """Embeddings (E wide) → `embeddings_project` → encoder: the discriminator trunk (HF `ElectraModel`), and
    the owner of the embeddings both towers share.

    Attributes:
      cfg: hyperparameters (the discriminator's).
      add_pooler: must stay False: ELECTRA has no pooler.
      collect_hidden: also return every layer's output.
    """

    cfg: Config
    add_pooler: bool = False
    output_cls = Output

    def setup(self):
        if self.add_pooler:
            raise ValueError("ELECTRA has no pooler (its classifiers read the first token); build it with "
                             "add_pooler=False.")
        self.embeddings = bert.Embeddings(self.cfg)
        self.encoder = Encoder(self.cfg, collect_hidden=self.collect_hidden)


class DiscriminatorHead(nn.Module):
    """dense D → D → `hidden_act` → dense D → 1: one replaced-token logit per position (§2; HF
    `ElectraDiscriminatorPredictions`)."""

    cfg: Config

    @nn.compact
    def __call__(self, hidden_BTD):
        """`[B, T, D]` → f32 logits `[B, T]`."""
        cfg = self.cfg
        d = cfg.hidden_size
        h_BTD = activation(cfg.hidden_act)(bert.dense(cfg, "BTD,DE->BTE", d, d, "dense")(hidden_BTD))
        logits_BT1 = bert.dense(cfg, "BTD,DC->BTC", d, 1, "dense_prediction")(h_BTD)
        return logits_BT1[..., 0].astype(jnp.float32)


class ElectraForPreTraining(nn.Module):
    """The generator and the discriminator in one module with one params tree (§2, Figure 1).

    `run_generator` and `run_discriminator` are the two passes of replaced-token detection (the objective samples
    between them); `__call__` runs both on the same ids (initialisation, parity checks, cloze scoring through
    the generator).
    """

    cfg: Config
    collect_hidden: bool = False

    def setup(self):
        cfg = self.cfg
        generator = cfg.generator_config()
        self.electra = ElectraModel(cfg, collect_hidden=self.collect_hidden)
        self.discriminator_predictions = DiscriminatorHead(cfg)
        self.generator = Encoder(generator, collect_hidden=self.collect_hidden)
        # HF `ElectraGeneratorPredictions` fixes exact GELU whatever `hidden_act` says.
        self.mlm_head = albert.MlmHead(generator, act="gelu")
        # An MLM head on the discriminator, for the paper's ablations that train it as a masked LM over generator
        # samples (Replace MLM, All-Tokens MLM; §3.5, Table 5). Flax creates its parameters only when it is called,
        # so RTD's parameter tree (and HF interop) never holds it.
        self.discriminator_mlm_head = albert.MlmHead(cfg, act="gelu")

    def run_generator(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                      mlm_positions_BP=None, deterministic=True) -> Output:
        """The generator on (masked) ids `[B, T]`: `Output` with its hidden states and MLM logits (`[B, P, V]` at
        `mlm_positions_BP`)."""
        x_BTE = self.electra.embed(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT,
                                   deterministic=deterministic)
        mask_BHTS = None if mask_BT is None else padding_mask(mask_BT)
        hidden_BTD, all_hidden = self.generator(x_BTE, mask_BHTS, deterministic)
        h_BPD = hidden_BTD if mlm_positions_BP is None else bert.gather_positions(hidden_BTD, mlm_positions_BP)
        return Output(hidden_BTD=hidden_BTD, mlm_logits_BTV=self.mlm_head(h_BPD, self.electra.attend),
                      all_hidden_LBTD=all_hidden)

    def run_discriminator(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                          deterministic=True, discriminator_mlm: str | None = None,
                          discriminator_mlm_positions_BP=None) -> Output:
        """The discriminator on (corrupted) ids `[B, T]`: `Output` with its hidden states and `rtd_logits_BT`.

        Args:
          discriminator_mlm: also predict tokens with the discriminator's own MLM head (the Table 5 ablations):
            `"positions"` at `discriminator_mlm_positions_BP` (`mlm_logits_BTV` is then `[B, P, V]`), `"all"` at
            every position (`[B, T, V]`); None: no MLM head (RTD). With `"positions"` (Replace MLM, a plain
            masked LM) the replaced-token head does not run and `rtd_logits_BT` is None.
        """
        if discriminator_mlm not in (None, "positions", "all"):
            raise ValueError(f"discriminator_mlm={discriminator_mlm!r}: choose 'positions', 'all' or None.")
        out = self.electra(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                           deterministic=deterministic)
        if discriminator_mlm != "positions":
            out = out.replace(rtd_logits_BT=self.discriminator_predictions(out.hidden_BTD))
        if discriminator_mlm is None:
            return out
        h_BPD = (out.hidden_BTD if discriminator_mlm == "all"
                 else bert.gather_positions(out.hidden_BTD, discriminator_mlm_positions_BP))
        return out.replace(mlm_logits_BTV=self.discriminator_mlm_head(h_BPD, self.electra.attend))

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 mlm_positions_BP=None, deterministic=True, discriminator_mlm: str | None = None) -> Output:
        """Both towers on the same ids `[B, T]`: the discriminator's `Output` with the generator's
        `mlm_logits_BTV` and `generator_hidden_BTD` (with `discriminator_mlm`, the discriminator's MLM head runs
        too, creating its parameters at init; its logits are not returned)."""
        kw = dict(segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                  deterministic=deterministic)
        gen = self.run_generator(tokens_BT, mlm_positions_BP=mlm_positions_BP, **kw)
        disc = self.run_discriminator(tokens_BT, **kw, discriminator_mlm=discriminator_mlm,
                                      discriminator_mlm_positions_BP=mlm_positions_BP)
        return disc.replace(mlm_logits_BTV=gen.mlm_logits_BTV, generator_hidden_BTD=gen.hidden_BTD)


def replaced_token_logits(cfg: Config, params, tokens_BT: jax.Array, mask_BT: jax.Array) -> jax.Array:
    """The discriminator's float32 replaced-token logits `[B, T]` (> 0: "replaced", §2) on ids `[B, T]` with padding
    mask `mask_BT`: the family's scoring member (`llm_jax.eval.score.original_log_probs`)."""
    return ElectraForPreTraining(cfg).apply({"params": params}, tokens_BT, mask_BT=mask_BT,
                                            method="run_discriminator").rtd_logits_BT


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "electra"
PRETRAINING_MODEL = ElectraForPreTraining
DEFAULT_OBJECTIVE = "rtd"
# The joint model scores text as a masked LM through its generator (`mlm_head`); the discriminator is what
# fine-tuning keeps.
LM_KIND = "masked"
# BERT's uncased WordPiece vocabulary and `[CLS] A [SEP] B [SEP]` inputs (§3.1: "the same data as BERT").
TOKENIZER = BERT_TOKENIZER
INPUT_FORMAT = bert.INPUT_FORMAT
TRUNK_NAME = "electra"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("electra/encoder/stack/layers/block/mlp",),
              "generator_intermediate_size": ("generator/stack/layers/block/mlp",)}
# Bias tests (`llm_jax.eval.embeddings`): the discriminator's token table (shared with the generator) and
# `[CLS]`'s state (the classification head is all new).
TOKEN_EMBEDDING = bert.TOKEN_EMBEDDING
pooled_features = bert.first_token_features


def build_trunk(cfg: Config, kind: str, **kwargs) -> ElectraModel:
    """The discriminator trunk (no pooler: every head reads tokens)."""
    del kind
    return ElectraModel(cfg, **kwargs)


def FINETUNE_OPTIM(cfg: Config) -> dict[str, Any]:  # noqa: N802 (a family attribute, read by configs/finetune.py)
    """ELECTRA's fine-tuning recipe beyond BERT's (Clark et al. Appendix, Table 7): layer-wise learning-rate decay
    0.8 for small and base, 0.9 for large (24 layers)."""
    return {"layer_decay": 0.9 if cfg.num_layers >= 24 else 0.8}


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """The first token through HF's heads: `ElectraClassificationHead` (dropout → dense → GELU → dropout →
    `out_proj`, named `classifier`) for classification and regression; `ElectraSequenceSummary` (dense
    `sequence_summary/summary` → GELU → dropout) → `classifier` (one logit per choice) for multiple choice.

    Returns:
      `[B, num_outputs]` logits.
    """
    if kind != "multiple_choice":
        return roberta.ClassificationHead(cfg, num_outputs, dropout, act="gelu", name="classifier")(
            trunk_out.hidden_BTD, deterministic)
    x_BD = SequenceSummary(cfg, dropout, name="sequence_summary")(trunk_out.hidden_BTD, deterministic)
    return bert.dense(cfg, "BD,DC->BC", cfg.hidden_size, num_outputs, "classifier")(x_BD)


class SequenceSummary(nn.Module):
    """First token → dense D → GELU → dropout (HF `ElectraSequenceSummary` with ELECTRA's defaults:
    `summary_type="first"`, a projection to D, `summary_activation="gelu"`, `summary_last_dropout`)."""

    cfg: Config
    dropout: float

    @nn.compact
    def __call__(self, hidden_BTD, deterministic: bool):
        """`[B, T, D]` → `[B, D]`."""
        d = self.cfg.hidden_size
        x_BD = activation("gelu")(bert.dense(self.cfg, "BD,DE->BE", d, d, "summary")(hidden_BTD[:, 0]))
        return nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """The generator (MLM head at the P masked positions) and the discriminator (one logit per token), each with
    its own look-up of the shared E-wide embeddings and its own E → D projection."""
    if seq_len > cfg.max_position_embeddings:
        raise ValueError(f"seq_len={seq_len} exceeds model.max_position_embeddings={cfg.max_position_embeddings}.")
    gen = cfg.generator_config()
    common = dict(vocab_size=cfg.vocab_size, seq_len=seq_len, embed_dim=cfg.embedding_size, embedding_tables=3)
    generator = Tower(num_layers=gen.num_layers, d_model=gen.hidden_size, num_heads=gen.num_heads,
                      head_dim=gen.head_dim, d_ff=gen.intermediate_size,
                      lm_positions=min(predicted_positions, seq_len) if "mlm" in heads else 0, lm_transform=True,
                      **common)
    # The Table 5 ablations' discriminator MLM head: at the P masked positions (Replace MLM) or at all T.
    disc_lm = (min(predicted_positions, seq_len) if "disc_mlm" in heads
               else seq_len if "disc_mlm_all" in heads else 0)
    discriminator = Tower(num_layers=cfg.num_layers, d_model=cfg.hidden_size, num_heads=cfg.num_heads,
                          head_dim=cfg.head_dim, d_ff=cfg.intermediate_size,
                          token_classes=1 if ("rtd" in heads or "disc_mlm_all" in heads) else 0,
                          lm_positions=disc_lm, lm_transform=bool(disc_lm), **common)
    return (generator, discriminator)


# ---------------------------------------------------------------------------------------- HF name maps
# Layout kinds as in bert.py. Both checkpoints hold the shared embeddings under `electra.embeddings`; reading both
# checks that they agree (`llm_jax.interop.state_dict.from_hf_views`).

_EMBEDDINGS = {f"electra/{k}": (f"electra.{v}", kind) for k, (v, kind) in bert.HF_ENCODER_MAP.items()
               if k.startswith("embeddings/")}


def _tower_map(ours: str) -> dict[str, tuple[str, str]]:
    """One tower's projection and layers: our `<ours>/…` → HF `electra.…`."""
    layers = {f"{ours}/{k[len('encoder/'):]}": (f"electra.{v}", kind) for k, (v, kind) in bert.HF_ENCODER_MAP.items()
              if k.startswith("encoder/")}
    return {**layers, f"{ours}/embeddings_project/kernel": ("electra.embeddings_project.weight", "linear"),
            f"{ours}/embeddings_project/bias": ("electra.embeddings_project.bias", "vector")}


DISCRIMINATOR_MAP: dict[str, tuple[str, str]] = {
    **_EMBEDDINGS, **_tower_map("electra/encoder"),
    "discriminator_predictions/dense/kernel": ("discriminator_predictions.dense.weight", "linear"),
    "discriminator_predictions/dense/bias": ("discriminator_predictions.dense.bias", "vector"),
    "discriminator_predictions/dense_prediction/kernel": ("discriminator_predictions.dense_prediction.weight",
                                                          "linear"),
    "discriminator_predictions/dense_prediction/bias": ("discriminator_predictions.dense_prediction.bias", "vector"),
}
GENERATOR_MAP: dict[str, tuple[str, str]] = {
    **_EMBEDDINGS, **_tower_map("generator"),
    "mlm_head/transform/kernel": ("generator_predictions.dense.weight", "linear"),
    "mlm_head/transform/bias": ("generator_predictions.dense.bias", "vector"),
    "mlm_head/layer_norm/scale": ("generator_predictions.LayerNorm.weight", "vector"),
    "mlm_head/layer_norm/bias": ("generator_predictions.LayerNorm.bias", "vector"),
    "mlm_head/bias": ("generator_lm_head.bias", "vector"),
}
HF_MODEL_TYPE = "electra"
HF_BASE_PREFIX = "electra"
HF_IGNORED: tuple[str, ...] = bert.HF_IGNORED
# The projection exists only when E ≠ D (per tower), as in HF.
HF_CONDITIONAL_PARAMS: tuple[str, ...] = ("electra/encoder/embeddings_project/", "generator/embeddings_project/")


def _tower_to_hf(cfg: Config, architecture: str) -> dict[str, Any]:
    hf = bert.config_to_hf(cfg)
    return {**hf, "model_type": HF_MODEL_TYPE, "architectures": [architecture], "embedding_size": cfg.embedding_size,
            "summary_type": "first", "summary_use_proj": True, "summary_activation": "gelu",
            "summary_last_dropout": 0.1}


def discriminator_config_to_hf(cfg: Config) -> dict[str, Any]:
    """The discriminator checkpoint's `config.json` (`ElectraConfig`, `ElectraForPreTraining`)."""
    return _tower_to_hf(cfg, "ElectraForPreTraining")


def generator_config_to_hf(cfg: Config) -> dict[str, Any]:
    """The generator checkpoint's `config.json` (`ElectraConfig` with the generator's sizes, `ElectraForMaskedLM`)."""
    return _tower_to_hf(cfg.generator_config(), "ElectraForMaskedLM")


def _tower_from_hf(hf: dict[str, Any]) -> Config:
    base = bert.config_from_hf(hf)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(bert.Config)}
    return Config(**fields, embedding_size=hf.get("embedding_size", 128))


def discriminator_config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a discriminator's `config.json` alone: the generator sized by the paper's default rule
    (¼ of the discriminator's width, `with_generator`); it only matters for continued pretraining, and reading
    both checkpoints (`config_from_hf_views`) gives the real one."""
    return with_generator(_tower_from_hf(hf), 0.25).validate()


def generator_config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a generator's `config.json` alone: a discriminator of the same size (the released
    ELECTRA-small's shape)."""
    return with_generator(_tower_from_hf(hf), 1.0).validate()


config_from_hf = discriminator_config_from_hf
config_to_hf = discriminator_config_to_hf


def config_from_hf_views(hf_by_view: dict[str, dict[str, Any]]) -> Config:
    """One Config from the generator's and the discriminator's `config.json` (read together).

    Raises:
      ValueError: the two disagree on what they share (vocabulary, embedding width, positions, token types).
    """
    if set(hf_by_view) != {"discriminator", "generator"}:
        (view, hf), = hf_by_view.items()
        return HF_VIEWS[view].config_from_hf(hf)
    disc, gen = _tower_from_hf(hf_by_view["discriminator"]), _tower_from_hf(hf_by_view["generator"])
    shared = ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size", "pad_token_id")
    differ = [f"{k}: {getattr(disc, k)} vs {getattr(gen, k)}" for k in shared if getattr(disc, k) != getattr(gen, k)]
    if differ:
        raise ValueError(f"The discriminator and generator checkpoints disagree on what they share ({', '.join(differ)}); "
                         "they are not one ELECTRA model. Load them from the same release, or one at a time.")
    return dataclasses.replace(disc, generator_hidden_size=gen.hidden_size, generator_num_layers=gen.num_layers,
                               generator_num_heads=gen.num_heads,
                               generator_intermediate_size=gen.intermediate_size).validate()


HF_VIEWS: dict[str, HfView] = {
    "discriminator": HfView(subtree_prefix="electra/", name_map=DISCRIMINATOR_MAP,
                            architecture="ElectraForPreTraining", config_to_hf=discriminator_config_to_hf,
                            config_from_hf=discriminator_config_from_hf,
                            # Fine-tuned discriminators: their task heads are reported, not read.
                            architectures=("ElectraModel", "ElectraForSequenceClassification",
                                           "ElectraForTokenClassification", "ElectraForQuestionAnswering",
                                           "ElectraForMultipleChoice"),
                            init_if_missing=("discriminator_predictions/",)),
    "generator": HfView(subtree_prefix="generator/", name_map=GENERATOR_MAP, architecture="ElectraForMaskedLM",
                        config_to_hf=generator_config_to_hf, config_from_hf=generator_config_from_hf,
                        tied_weights={"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"},
                        init_if_missing=("mlm_head/",)),
}
