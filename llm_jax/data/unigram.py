"""The unigram baseline of a masked LM: how many nats a model that knows only token frequencies pays per token.

A masked-LM loss is only evidence of learning *language* once it is below this number: a model that ignores the
context and predicts every masked position from the training split's token frequencies gets exactly the held-out
cross-entropy `H(p_eval, p_train)` (masked positions are drawn uniformly among the maskable tokens). A tiny model
reaches it within a few hundred steps; everything below it comes from reading the context.

    python -m llm_jax.data.unigram --corpus C --vocab-sizes 2000,4000,8000 [--seq-len ...]

prints, per WordPiece vocabulary trained on the corpus's train split (BERT's tokenizer, as pretraining trains it):
the train split's unigram entropy and the validation split's cross-entropy under the train frequencies, both in
nats over maskable tokens (special tokens excluded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class UnigramBaseline:
    """Unigram statistics of one tokenization.

    Attributes:
      vocab_size: the tokenizer's size.
      train_tokens / eval_tokens: maskable tokens counted in each split.
      train_entropy: `H(p_train)`, nats per token.
      eval_cross_entropy: `H(p_eval, p_train)` with add-one smoothing of the train counts, nats per token: the
        held-out MLM loss of a context-free predictor (the number a masked LM's eval loss must beat).
    """

    vocab_size: int
    train_tokens: int
    eval_tokens: int
    train_entropy: float
    eval_cross_entropy: float


def token_counts(docs_ids: Iterable[Sequence[np.ndarray]], vocab_size: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """Counts of every id over `docs_ids` (documents of sentence id arrays), `exclude`d ids zeroed; `[V]` int64."""
    counts = np.zeros(vocab_size, np.int64)
    for doc in docs_ids:
        for sentence in doc:
            counts += np.bincount(np.asarray(sentence, np.int64), minlength=vocab_size)[:vocab_size]
    counts[list(exclude)] = 0
    return counts


def unigram_baseline(train_docs_ids, eval_docs_ids, vocab_size: int, exclude: Sequence[int] = ()) -> UnigramBaseline:
    """The train split's unigram entropy and the eval split's cross-entropy under it (nats; `UnigramBaseline`).

    Raises:
      ValueError: the train split has no countable token.
    """
    train = token_counts(train_docs_ids, vocab_size, exclude)
    held = token_counts(eval_docs_ids, vocab_size, exclude)
    if train.sum() == 0:
        raise ValueError("The train split has no tokens to count: check the corpus and its text field.")
    p = train / train.sum()
    nz = p > 0
    entropy = float(-(p[nz] * np.log(p[nz])).sum())
    smoothed = train + 1.0
    smoothed[list(exclude)] = 0
    log_q = np.log(np.where(smoothed > 0, smoothed, 1.0) / smoothed.sum())
    cross = float(-(held * log_q).sum() / held.sum()) if held.sum() else float("nan")
    return UnigramBaseline(vocab_size, int(train.sum()), int(held.sum()), entropy, cross)


def for_tokenizer(tok, train_docs: list[str], eval_docs: list[str], spec) -> UnigramBaseline:
    """`unigram_baseline` of raw documents under `tok` (special tokens of `spec.roles` excluded)."""
    from llm_jax.data.tokenizers.encode import tokenize_documents
    from llm_jax.data.tokenizers.roles import special_ids

    special = special_ids(tok, spec.roles)
    exclude = [i for i in (special.pad, special.cls, special.sep, special.mask) if i is not None]
    train_ids = tokenize_documents(tok, train_docs, keep_newlines=spec.keep_newlines)
    eval_ids = tokenize_documents(tok, eval_docs, keep_newlines=spec.keep_newlines)
    return unigram_baseline(train_ids, eval_ids, tok.get_vocab_size(), exclude)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_jax.data.unigram", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="bundled", help="as data.corpus of a pretraining config")
    parser.add_argument("--vocab-sizes", default="2000,4000,8000", help="WordPiece sizes, comma-separated")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args(argv)
    from llm_jax.data.corpus import load_documents
    from llm_jax.data.tokenizer import BERT_TOKENIZER

    train_docs = load_documents(args.corpus, "train")
    eval_docs = load_documents(args.corpus, "validation")
    rows = []
    print("| vocabulary | train tokens | train unigram entropy (nats) | validation cross-entropy (nats) |")
    print("|---|---|---|---|")
    for v in (int(x) for x in args.vocab_sizes.split(",") if x.strip()):
        tok = BERT_TOKENIZER.train(train_docs, v, lowercase=True)
        row = for_tokenizer(tok, train_docs, eval_docs, BERT_TOKENIZER)
        rows.append(dataclasses.asdict(row))
        print(f"| WordPiece {row.vocab_size} | {row.train_tokens:,} | {row.train_entropy:.3f} | "
              f"{row.eval_cross_entropy:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
