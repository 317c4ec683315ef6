"""Word and sentence vectors from any family, for the association tests of `llm_jax.eval.bias`.

Three levels, each a different question about a model:

* **static**: a word's row(s) of the input token-embedding table (`TOKEN_EMBEDDING` of the family contract) —
  its first piece, or the mean of its pieces (Wambsganss et al. 2022 read BERT's first piece). No context at
  all: what the embedding layer learnt.
* **word** (contextual): the word alone, as a whole text with the family's special tokens (`[CLS] w [SEP]`,
  `w </s>`, or nothing for GPT), through the model; a chosen layer's states at the word's pieces, pooled by the
  first piece (May et al. 2019 for BERT), the last (the only piece a causal model reads the whole word at) or their
  mean. An encoder-decoder is read at its encoder.
* **sentence** (SEAT, May et al. 2019): each word put into semantically bleached templates (`WORD_TEMPLATES`,
  `NAME_TEMPLATES`: ours, in the spirit of SEAT's "This is a[n] <word>."; SEAT's own sentence files are licensed
  for non-commercial use only), every sentence one member of its set. A sentence is pooled as the family's
  sequence classifier pools before its first new layer (`pooled_features`: BERT's pretrained pooler, the first
  token's state for RoBERTa/ELECTRA/DistilBERT, GPT's last real token, T5's decoder at the last `</s>`), or by the
  mean over its real tokens at a chosen layer (special tokens included, as sentence-transformers pools). An example
  that already holds a space is taken to be a sentence and used as it is (the sent-bias files hold sentences).

Rows are right-padded and masked: a padded row computes at its real positions what the row alone computes (causal
and bidirectional attention alike never read a masked key). A word's pieces are the tokens that are not special
and cover at least one of its characters (a SentencePiece `▁` alone covers none). Everything the family offers is
reached through the contract (`build_trunk`, `TRUNK_NAME`, `TOKEN_EMBEDDING`, `pooled_features`, `LM_KIND`):
no family is named here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from llm_jax import models
from llm_jax.layers import check_ids

LEVELS = ("static", "word", "sentence")
PIECE_POOLINGS = ("auto", "first", "last", "mean")
SENTENCE_POOLINGS = ("classifier", "mean")
# Our bleached templates ({a}: "a"/"an" by the word's first letter; {A}: the same, capitalised). Names (a capitalised
# word) get the second list, as SEAT writes "This is <Name>.".
WORD_TEMPLATES = ("This is {a} {w}.", "That is {a} {w}.", "There is {a} {w}.", "Here is {a} {w}.",
                  "{A} {w} is here.")
NAME_TEMPLATES = ("This is {w}.", "That is {w}.", "There is {w}.", "Here is {w}.", "{w} is here.")
_ROW_MULTIPLE = 8  # pad lengths up to a multiple of this: few compiled shapes
BATCH = 64


def sentences_for(word: str) -> list[str]:
    """The sentences a word becomes at sentence level: the templates, or the example itself if it is a sentence."""
    if any(c.isspace() for c in word):
        return [word]
    if word[:1].isupper():
        return [t.format(w=word) for t in NAME_TEMPLATES]
    a = "an" if word[:1].lower() in "aeiou" else "a"
    return [t.format(w=word, a=a, A=a.capitalize()) for t in WORD_TEMPLATES]


def _plain(tok: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    out = tokenizers.Tokenizer.from_str(tok.to_str())
    out.no_padding()
    out.no_truncation()
    return out


def _word_pieces(enc: tokenizers.Encoding, text: str) -> list[int]:
    """Positions of the tokens that are not special and cover at least one non-space character of `text`."""
    return [i for i, (special, (start, end)) in enumerate(zip(enc.special_tokens_mask, enc.offsets))
            if not special and end > start and text[start:end].strip()]


@functools.lru_cache(maxsize=8)
def _forward(family: str, config, layer: int | None, pooled: bool):
    """The jitted `(trunk params, tokens [B, T], mask [B, T]) -> states [B, T, D] (or pooled [B, D])`."""
    fam = models.family_module(family)
    trunk = fam.build_trunk(config, "classification", collect_hidden=layer is not None)

    @jax.jit
    def run(params, tokens_BT, mask_BT):
        out = trunk.apply({"params": params}, tokens_BT, segment_ids_BT=jnp.zeros_like(tokens_BT), mask_BT=mask_BT,
                          deterministic=True)
        if pooled:
            return fam.pooled_features(config, out).astype(jnp.float32)
        if layer is None:
            return out.hidden_BTD.astype(jnp.float32)
        n = out.all_hidden_LBTD.shape[0]
        if not (1 <= layer <= n or -n <= layer <= -1):
            raise ValueError(f"layer={layer} is outside the model's {n} layers; use 1 … {n} (or −1 … −{n}).")
        return out.all_hidden_LBTD[layer - 1 if layer > 0 else layer].astype(jnp.float32)

    return run


@dataclasses.dataclass
class TextEncoder:
    """A loaded model (`llm_jax.interop.native.load_pretrained`'s four values) that turns words into vectors.

    Raises:
      ValueError: a family without the representation members, or no tokenizer.
    """

    family: str
    config: Any
    params: dict
    tokenizer: tokenizers.Tokenizer

    def __post_init__(self):
        fam = models.family_module(self.family)
        if not hasattr(fam, "TOKEN_EMBEDDING"):
            raise ValueError(f"The {self.family} family declares no TOKEN_EMBEDDING / pooled_features "
                             "(llm_jax/models/family.py), which the bias tests read; add them to its module.")
        if self.tokenizer is None:
            raise ValueError("The model has no tokenizer.json to split words with; point at its run directory or "
                             "export it with its tokenizer (llm-jax convert).")
        self._fam = fam
        self._memo: dict[tuple, tuple[np.ndarray, list[str]]] = {}  # WEAT 1–4 share their attribute sets
        self._tok = _plain(self.tokenizer)
        self._trunk_params = self.params[fam.TRUNK_NAME]

    def default_piece(self, level: str) -> str:
        """`auto` resolved: the first piece, except a causal model's contextual word, read at its last piece."""
        return "last" if level == "word" and self._fam.LM_KIND == "causal" else "first"

    def _pieces(self, texts: Sequence[str], special: bool) -> list[tokenizers.Encoding]:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=special)
        for text, enc in zip(texts, encs):
            if not _word_pieces(enc, text):
                raise ValueError(f"{text!r} encodes to no tokens with this tokenizer; drop it from the test.")
        return encs

    def static(self, words: Sequence[str], piece: str = "auto") -> np.ndarray:
        """`[N, E]` float64: rows of the input token-embedding table, at each word's first piece or their mean."""
        piece = self._piece(piece, "static")
        table = self._trunk_params
        for key in self._fam.TOKEN_EMBEDDING:
            table = table[key]
        table_VE = np.asarray(table, np.float64)
        out = []
        for text, enc in zip(words, self._pieces(words, special=False)):
            ids = np.asarray(enc.ids)[_word_pieces(enc, text)]
            check_ids(ids, table_VE.shape[0], "token ids (model.vocab_size)")
            out.append(_pool_rows(table_VE[ids], piece))
        return np.stack(out)

    def _run(self, texts: Sequence[str], layer: int | None, pooled: bool):
        """Encodes `texts` with special tokens and returns `(encodings, outputs per text)`, batched and padded."""
        encs = self._pieces(texts, special=True)
        run = _forward(self.family, self.config, layer, pooled)
        outs = []
        for s in range(0, len(encs), BATCH):
            chunk = encs[s:s + BATCH]
            t = -(-max(len(e.ids) for e in chunk) // _ROW_MULTIPLE) * _ROW_MULTIPLE
            if t > self.config.max_seq_len:
                raise ValueError(f"A text of {max(len(e.ids) for e in chunk)} tokens exceeds the model's "
                                 f"{self.config.max_seq_len} positions; shorten the test's examples.")
            tokens = np.zeros((BATCH, t), np.int32)  # any id: padded positions are masked
            mask = np.zeros((BATCH, t), bool)
            for i, e in enumerate(chunk):
                tokens[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, True
            tokens[len(chunk):], mask[len(chunk):] = tokens[0], mask[0]  # fill rows: copies, dropped below
            check_ids(tokens, self.config.vocab_size, "token ids (model.vocab_size)")
            outs.extend(np.asarray(run(self._trunk_params, tokens, mask), np.float64)[:len(chunk)])
        return encs, outs

    def word(self, words: Sequence[str], *, layer: int | None = None, piece: str = "auto") -> np.ndarray:
        """`[N, D]` float64: each word alone through the model; `layer` None = the trunk's output (after a final
        norm where the family has one), l ≥ 1 = layer l's output (negative: from the top); pooled over its pieces."""
        piece = self._piece(piece, "word")
        encs, states = self._run(words, layer, pooled=False)
        return np.stack([_pool_rows(h_TD[_word_pieces(e, w)], piece) for w, e, h_TD in zip(words, encs, states)])

    def sentence(self, sentences: Sequence[str], *, pooling: str = "classifier",
                 layer: int | None = None) -> np.ndarray:
        """`[N, D]` float64: each sentence pooled as the family's classifier pools, or by the mean of its tokens.

        Raises:
          ValueError: an unknown pooling, or a `layer` with classifier pooling (which reads the last layer).
        """
        if pooling not in SENTENCE_POOLINGS:
            raise ValueError(f"pooling={pooling!r}: choose one of {SENTENCE_POOLINGS}.")
        if pooling == "classifier":
            if layer is not None:
                raise ValueError("Classifier pooling reads the model's last layer; a layer goes with mean pooling "
                                 "(--pooling mean).")
            return np.stack(self._run(sentences, None, pooled=True)[1])
        encs, states = self._run(sentences, layer, pooled=False)
        return np.stack([h_TD[:len(e.ids)].mean(0) for e, h_TD in zip(encs, states)])

    def _piece(self, piece: str, level: str) -> str:
        if piece not in PIECE_POOLINGS:
            raise ValueError(f"piece={piece!r}: choose one of {PIECE_POOLINGS}.")
        return self.default_piece(level) if piece == "auto" else piece

    def embed(self, examples: Sequence[str], level: str, *, layer: int | None = None, piece: str = "auto",
              pooling: str = "classifier") -> tuple[np.ndarray, list[str]]:
        """The vectors of one set of a test at `level`, with the texts they stand for (sentence level: one row per
        template sentence).

        Raises:
          ValueError: an unknown level, or one of the errors of `static`, `word`, `sentence`.
        """
        key = (tuple(examples), level, layer, piece, pooling)
        if key not in self._memo:
            self._memo[key] = self._embed(examples, level, layer=layer, piece=piece, pooling=pooling)
        return self._memo[key]

    def _embed(self, examples, level, *, layer, piece, pooling):
        if level not in LEVELS:
            raise ValueError(f"level={level!r}: choose one of {LEVELS}.")
        if level != "sentence" and pooling != "classifier":
            raise ValueError("A sentence pooling applies to --level sentence only.")
        if level == "static":
            if layer is not None:
                raise ValueError("Static vectors have no layer; a layer goes with --level word or sentence.")
            return self.static(examples, piece), list(examples)
        if level == "word":
            return self.word(examples, layer=layer, piece=piece), list(examples)
        if piece != "auto":
            raise ValueError("Piece pooling applies to --level static and word; sentences are pooled by --pooling.")
        texts = [s for w in examples for s in sentences_for(w)]
        return self.sentence(texts, pooling=pooling, layer=layer), texts


def _pool_rows(rows_PD: np.ndarray, piece: str) -> np.ndarray:
    return {"first": lambda r: r[0], "last": lambda r: r[-1], "mean": lambda r: r.mean(0)}[piece](rows_PD)


__all__ = ["LEVELS", "NAME_TEMPLATES", "PIECE_POOLINGS", "SENTENCE_POOLINGS", "TextEncoder", "WORD_TEMPLATES",
           "sentences_for"]
