"""Where a fine-tuning (or evaluation) run's model comes from: a preset, a run of ours, or a Hugging Face directory.

`ModelSource` is the config section; `resolve_model` turns it into a `Source` (family, Config, params or None for
random init, tokenizer). The pretraining loop's `init_from` reads the same directories (`interop.load_pretrained`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from llm_jax import models
from llm_jax.data.input_format import finetuning_tokenizer
from llm_jax.data.tokenizer import special_ids
from llm_jax.train.pipeline import DataConfig, get_tokenizer


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the model comes from, and the run-time choices that the checkpoint does not fix.

    Attributes:
      name: a preset (`bert-tiny`, `roberta-base`, ...: random init), or a directory: a run of ours, one of its
        checkpoint steps, a model directory, or a Hugging Face checkpoint.
      random_init: take only the architecture (and tokenizer) from `name` and start from random weights — the
        "from scratch" control of a transfer-learning comparison.
      hidden_dropout / attention_dropout: the trunk's dropout during fine-tuning (BERT §4: 0.1).
      classifier_dropout: dropout before the output layer (HF's `classifier_dropout`).
      dtype / remat / scan_unroll / attention_impl: numerics, memory and speed (see the family Config). Unlike pretraining, the layer
        scan stays rolled by default: fine-tuning runs are short, and the rolled loop compiles about twice as fast.
    """

    name: str = "bert-tiny"
    random_init: bool = False
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    dtype: str = "float32"
    remat: str = "none"
    scan_unroll: bool = False
    attention_impl: str = "einsum"

    def validate(self) -> "ModelSource":
        for k in ("hidden_dropout", "attention_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ValueError(f"model.{k}={getattr(self, k)} must be in [0, 1).")
        return self


@dataclasses.dataclass
class Source:
    """A resolved model source: family, Config, pretrained params (None = random init) and tokenizer."""

    family: str
    config: Any
    params: dict | None
    tokenizer: Any
    description: str


def resolve_model(source: ModelSource, tokenizer_cfg: DataConfig, workdir: pathlib.Path) -> Source:
    """The family, Config, params and tokenizer named by `source` (see `ModelSource`).

    A preset gets the workdir's tokenizer (resume), the configured one, or one trained on
    `tokenizer_cfg.corpus` (the pretraining pipeline's one tokenizer path).

    Raises:
      FileNotFoundError: a name that is neither a preset nor a directory, or a directory without a tokenizer.
    """
    name = source.name
    if name in models.all_presets():
        family, config = models.get_preset(name)
        fam = models.family_module(family)
        from llm_jax.data.corpus import load_documents  # why lazy: only presets without a tokenizer read the corpus

        def documents():
            return load_documents(tokenizer_cfg.corpus, tokenizer_cfg.train_split,
                                  max_documents=tokenizer_cfg.max_documents or None)

        tok = get_tokenizer(tokenizer_cfg, fam.TOKENIZER, workdir, documents)
        config = models.with_runtime(config.with_vocabulary(tok.get_vocab_size(),
                                                            special_ids(tok, fam.TOKENIZER.roles)), source)
        return Source(family, config, None, tok, f"{name} (random init)")
    path = pathlib.Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model.name={name!r} is neither a preset ({', '.join(sorted(models.all_presets()))}) "
                                "nor an existing directory (a run, checkpoint step, model or Hugging Face directory).")
    from llm_jax.interop.native import load_pretrained  # why lazy: only runs that start from given weights

    family, config, params, tok = load_pretrained(path)
    config, params = _trainable(family, config, params, "fine-tuning")
    if tok is None:
        raise FileNotFoundError(f"{path} has no tokenizer beside its weights; the token ids must come from the "
                                "tokenizer the model was trained with.")
    config = models.with_runtime(config, source)
    if source.random_init:
        return Source(family, config, None, tok, f"{path} architecture (random init)")
    return Source(family, config, params, tok, str(path))


def _trainable(family: str, config, params, purpose: str):
    """`(config, params)` a run trains from, float32: a compressed model's (`llm-jax compress`) int8 kernels
    dequantized (no quantization-aware training here: training starts from the dequantized weights, one logged line
    says so) and 16-bit params cast up (training keeps float32 weights; the run's `model.dtype` sets the compute
    precision)."""
    from llm_jax.compression import quantize

    config, params = quantize.as_float(family, config, params, purpose)
    return config, quantize.cast_params(params, "float32")


def for_task_inputs(source: Source) -> tuple[Source, dict[str, str]]:
    """`source` made ready for its family's task inputs (`INPUT_FORMAT`, `llm_jax.data.input_format`): the
    tokenizer with the family's task tokens and template (`finetuning_tokenizer`), and the Config's vocabulary
    grown to hold the tokens added (the params are not touched: `heads.transplant_trunk` grows their token table).

    Returns:
      `(source, roles)`: the new source and the role map task encoding uses (the family's roles and task tokens).
    """
    fam = models.family_module(source.family)
    ready = finetuning_tokenizer(source.tokenizer, fam.INPUT_FORMAT, fam.TOKENIZER.roles)
    config, size = source.config, ready.tokenizer.get_vocab_size()
    if size > config.vocab_size:
        config = config.with_vocabulary(size, special_ids(ready.tokenizer, ready.roles))
    return dataclasses.replace(source, tokenizer=ready.tokenizer, config=config), ready.roles


__all__ = ["ModelSource", "Source", "for_task_inputs", "resolve_model"]
