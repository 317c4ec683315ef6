"""From `data` config to example pools: corpus → tokenizer (trained or loaded) → tokenized documents → examples.

The tokenizer a run trains is saved as `<workdir>/tokenizer.json` and reused when the run resumes, so a
restarted run sees exactly the same token ids.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np

from llm_jax.data.corpus import load_documents
from llm_jax.data.tokenizer import (TokenizerSpec, load_tokenizer, save_tokenizer, special_ids,
                                    tokenize_documents)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where text comes from and how it becomes tokens.

    Attributes:
      corpus: `bundled`, a local file/glob (.jsonl, .jsonl.xz, .txt), or a Hugging Face hub dataset name.
      text_field: the document text column.
      train_split / eval_split: splits of `corpus` (eval may be empty to skip evaluation).
      max_documents / max_eval_documents: use only the first N documents (0 = all).
      seq_len: tokens per example.
      vocab_size: size of the tokenizer trained for the run.
      tokenizer: an existing tokenizer (folder with tokenizer.json, or the file); empty = train one.
      lowercase: lower-case text when training a WordPiece tokenizer (BERT uncased).
    """

    corpus: str = "bundled"
    text_field: str = "text"
    train_split: str = "train"
    eval_split: str = "validation"
    max_documents: int = 0
    max_eval_documents: int = 0
    seq_len: int = 128
    vocab_size: int = 8000
    tokenizer: str = ""
    lowercase: bool = True

    def validate(self) -> "DataConfig":
        if self.seq_len < 8:
            raise ValueError(f"data.seq_len={self.seq_len} is too short; use at least 8 tokens.")
        if self.vocab_size < 100:
            raise ValueError(f"data.vocab_size={self.vocab_size} is too small for a subword vocabulary (≥ 100).")
        if self.max_documents < 0 or self.max_eval_documents < 0:
            raise ValueError("data.max_documents / data.max_eval_documents must be ≥ 0 (0 = all).")
        return self


def get_tokenizer(cfg: DataConfig, spec: TokenizerSpec, workdir: pathlib.Path,
                  train_docs: list[str] | Callable[[], list[str]]):
    """The run's tokenizer: the workdir's (resume), the configured one, or a newly trained one (saved).

    The one tokenizer path of pretraining and fine-tuning.

    Args:
      spec: the family's `TOKENIZER` (kind, special tokens in id order, roles, input template).
      train_docs: the documents to train on, or a function returning them (read only when training).
    """
    saved = workdir / "tokenizer.json"
    if saved.exists():
        return load_tokenizer(saved)
    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
    else:
        t0 = time.time()
        docs = train_docs() if callable(train_docs) else train_docs
        # Why only for WordPiece: `data.lowercase` chooses BERT's cased / uncased vocabulary; the other kinds
        # follow their family's spec (GPT-2 and RoBERTa are cased, ALBERT lower-cases).
        tok = spec.train(docs, cfg.vocab_size, **({"lowercase": cfg.lowercase} if spec.kind == "wordpiece" else {}))
        log.info("Trained a %s tokenizer with %d entries in %.1fs", spec.kind, tok.get_vocab_size(), time.time() - t0)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tok, workdir)
    return tok


@dataclasses.dataclass
class Data:
    """What a pretraining run consumes."""

    tokenizer: object
    special: object
    train_docs_ids: list
    eval_docs_ids: list


def load_data(cfg: DataConfig, spec: TokenizerSpec, workdir: pathlib.Path, tokenizer=None) -> Data:
    """Reads the corpus splits, gets the tokenizer, and tokenizes every document.

    Args:
      spec: the family's `TOKENIZER`: how a new tokenizer is trained, its special-token roles, and whether
        newlines are text (documents are then encoded whole).
      tokenizer: use this tokenizer (e.g. the one beside `model.init_from`'s weights).
    """
    cfg.validate()
    train_docs = load_documents(cfg.corpus, cfg.train_split, text_field=cfg.text_field,
                                max_documents=cfg.max_documents or None)
    eval_docs = []
    if cfg.eval_split:
        eval_docs = load_documents(cfg.corpus, cfg.eval_split, text_field=cfg.text_field,
                                   max_documents=cfg.max_eval_documents or None)
    if tokenizer is not None:
        tok = tokenizer
        if jax.process_index() == 0 and not (workdir / "tokenizer.json").exists():
            save_tokenizer(tok, workdir)  # the run directory is self-contained: weights + the tokenizer they need
    else:
        tok = get_tokenizer(cfg, spec, workdir, train_docs)
    t0 = time.time()
    train_ids = tokenize_documents(tok, train_docs, keep_newlines=spec.keep_newlines)
    eval_ids = tokenize_documents(tok, eval_docs, keep_newlines=spec.keep_newlines) if eval_docs else []
    n_tokens = sum(int(sum(len(s) for s in d)) for d in train_ids)
    log.info("Tokenized %d train documents (%d tokens) and %d eval documents in %.1fs", len(train_ids), n_tokens,
             len(eval_ids), time.time() - t0)
    return Data(tokenizer=tok, special=special_ids(tok, spec.roles), train_docs_ids=train_ids, eval_docs_ids=eval_ids)


def fixed_eval_batches(objective, examples: dict[str, np.ndarray], batch_size: int, num_batches: int, seed: int):
    """The same evaluation batches at every evaluation (first rows, masks from a fixed seed)."""
    n = len(next(iter(examples.values())))
    batches = []
    for b in range(min(num_batches, n // batch_size)):
        rows = {k: v[b * batch_size:(b + 1) * batch_size] for k, v in examples.items()}
        rows["example_index"] = np.arange(b * batch_size, (b + 1) * batch_size)
        rows["epoch"] = np.zeros(batch_size, np.int64)
        batches.append(objective.prepare(rows, seed))
    return batches
