"""SentencePiece Unigram vocabularies (Kudo, 2018; Kudo & Richardson, 2018) for ALBERT, XLNet and T5.

Trained with the ``sentencepiece`` library itself (its Unigram EM trainer and ``nmt_nfkc`` normalization, as the
published ``spiece.model`` files were), then run as a ``tokenizers.Tokenizer`` assembled the way transformers 5
assembles ``T5Tokenizer`` / ``AlbertTokenizer`` / ``XLNetTokenizer`` from a ``spiece.model``:

* normalizer: ALBERT/XLNet's ``preprocess_text`` when ``keep_accents=False`` (doubled back-ticks and doubled
  apostrophes become ``"``, NFKD, accents dropped) → lower case when asked (ALBERT) → SentencePiece's
  precompiled ``nmt_nfkc`` map;
* pre-tokenizer: split on whitespace, then ``▁`` before every word (SentencePiece's dummy prefix);
* model: Unigram with the trained pieces and scores, Viterbi segmentation.

On ordinary text the ids equal ``sentencepiece.SentencePieceProcessor``'s. One deliberate difference from the
scores in a ``spiece.model``: control pieces (``<pad>``, ``</s>``, ``[CLS]``, …) get a score no segmentation
of known characters picks, because SentencePiece never emits them for text while a Unigram model would choose
``</s>`` (score 0) for the characters ``</s>``; so text that spells a special token stays text, as with the other
kinds. The limit: when the spelling contains a character the vocabulary lacks (e.g. ``<`` in a corpus without
one), every other path needs an unknown piece, whose score is tied to the lowest score, and the control piece
wins; with ``character_coverage=1`` that needs a character unseen in training.

T5's sentinels ``<extra_id_0..E-1>`` follow the SentencePiece pieces in descending order (``<extra_id_0>`` has
the largest id), as in T5's vocabulary (Raffel et al., 2020, §3.1.4; transformers' ``T5Tokenizer(extra_ids=100)``).
They are not part of ``spiece.model``; transformers re-creates them from ``extra_ids`` in ``tokenizer_config.json``.
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
from collections.abc import Sequence

import sentencepiece
import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import decoders, models, normalizers, pre_tokenizers

SPIECE_MODEL = "spiece.model"
# SentencePiece's word-boundary symbol (U+2581), put before every word.
SPACE = "\u2581"
SENTINEL = "<extra_id_{i}>"
# Score of control pieces in the Unigram model: far below any path of real pieces (SentencePiece's scores are
# log-probabilities above about -30), so Viterbi never picks one.
_CONTROL_SCORE = -1.0e6
# Fixed so that the same text always gives the same model (SentencePiece seeds its sampling from it).
_SEED = 0
_Piece = sentencepiece_model_pb2.ModelProto.SentencePiece


def _preprocess_steps(*, lowercase: bool, keep_accents: bool) -> list[normalizers.Normalizer]:
    """What runs before SentencePiece's own normalization, in transformers' order."""
    steps: list[normalizers.Normalizer] = []
    if not keep_accents:
        # ALBERT / XLNet preprocess_text (google-research/albert tokenization.py), as transformers builds it.
        steps += [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                  normalizers.StripAccents()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return steps


def _normalizer(charsmap: bytes, *, lowercase: bool, keep_accents: bool) -> normalizers.Normalizer:
    steps = _preprocess_steps(lowercase=lowercase, keep_accents=keep_accents) + [normalizers.Precompiled(charsmap)]
    return normalizers.Sequence(steps) if len(steps) > 1 else steps[0]


def tokenizer_from_proto(proto: bytes, *, lowercase: bool, keep_accents: bool) -> tokenizers.Tokenizer:
    """A ``tokenizers.Tokenizer`` that segments as the SentencePiece Unigram model ``proto``.

    Args:
      proto: A serialized SentencePiece ``ModelProto`` (the bytes of a ``spiece.model``).
      lowercase: Lower-case before SentencePiece (ALBERT's ``do_lower_case``).
      keep_accents: ``False`` applies ALBERT/XLNet's ``preprocess_text`` (quotes, NFKD, accents dropped).

    Returns:
      The tokenizer; control and unknown pieces are registered as special tokens. No post-processor.

    Raises:
      ValueError: ``proto`` is not a Unigram model without byte fallback.
    """
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(proto)
    if m.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM or m.trainer_spec.byte_fallback:
        raise ValueError("The SentencePiece model is not a Unigram model without byte fallback; only those (ALBERT, "
                         "XLNet and T5's) can be loaded as the 'unigram' kind.")
    special = {_Piece.CONTROL, _Piece.UNKNOWN}
    vocab = [(p.piece, _CONTROL_SCORE if p.type in special else p.score) for p in m.pieces]
    tok = tokenizers.Tokenizer(models.Unigram(vocab, unk_id=m.trainer_spec.unk_id, byte_fallback=False))
    tok.normalizer = _normalizer(m.normalizer_spec.precompiled_charsmap, lowercase=lowercase,
                                 keep_accents=keep_accents)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
    tok.add_special_tokens([p.piece for p in m.pieces if p.type in special])
    # Once through tokenizers' JSON: its float parser is not exact, so a score changes in its last digits on the
    # first save/load and then stays; this way the tokenizer in memory equals its saved and reloaded self.
    return tokenizers.Tokenizer.from_str(tok.to_str())


def add_sentinels(tok: tokenizers.Tokenizer, extra_ids: int) -> tokenizers.Tokenizer:
    """``tok`` with ``<extra_id_{extra_ids-1}>`` … ``<extra_id_0>`` appended to its vocabulary, as T5 orders them.

    They join the Unigram model's vocabulary (as in T5's tokenizer.json) and are registered as special tokens.
    """
    if extra_ids <= 0:
        return tok
    sentinels = [SENTINEL.format(i=i) for i in range(extra_ids - 1, -1, -1)]
    data = json.loads(tok.to_str())
    data["model"]["vocab"] += [[s, _CONTROL_SCORE] for s in sentinels]
    out = tokenizers.Tokenizer.from_str(json.dumps(data))
    out.add_special_tokens(sentinels)
    return out


def train_unigram(sentences: list[str], vocab_size: int, specials: Sequence[str], unk: str, *, lowercase: bool,
                  keep_accents: bool, extra_ids: int) -> tokenizers.Tokenizer:
    """Trains a SentencePiece Unigram vocabulary; ``specials`` take ids ``0..len(specials)-1`` in order.

    Args:
      sentences: Training sentences (lines longer than SentencePiece's 4192-byte limit are skipped by it).
      vocab_size: Upper bound on the vocabulary, specials and sentinels included; a small corpus may give fewer
        pieces (SentencePiece's ``hard_vocab_limit=false``).
      specials: Special tokens in id order (ALBERT ``<pad> <unk> [CLS] [SEP] [MASK]``; XLNet ``<unk> <s> </s>
        <cls> <sep> <pad> <mask> <eod> <eop>``; T5 ``<pad> </s> <unk>``). All but ``unk`` become control symbols.
      unk: The unknown token, one of ``specials``.
      lowercase: Lower-case the text (ALBERT).
      keep_accents: ``False`` applies ALBERT/XLNet's ``preprocess_text`` before training and encoding.
      extra_ids: Number of T5 sentinels appended after the pieces (0 for ALBERT and XLNet).

    Returns:
      The tokenizer, without post-processor (the caller sets the family's template).

    Raises:
      ValueError: ``vocab_size`` too small, or SentencePiece rejects the text.
    """
    n_pieces = vocab_size - extra_ids
    # SentencePiece needs room for the characters of the text on top of the special pieces.
    minimum = len(specials) + 1
    if n_pieces <= minimum:
        raise ValueError(f"vocab_size={vocab_size} is too small for a Unigram tokenizer with {len(specials)} special "
                         f"tokens and {extra_ids} sentinels: use vocab_size >= {minimum + extra_ids + 1} (plus "
                         f"the characters of the text; ALBERT and T5 use 30000 and 32100).")
    steps = _preprocess_steps(lowercase=lowercase, keep_accents=keep_accents)
    if steps:
        # Training sees the text as encoding will: the run-time steps before SentencePiece's own normalization
        # (ALBERT's preprocess_text ran before spm_train, too).
        preprocess = normalizers.Sequence(steps)
        sentences = [preprocess.normalize_str(s) for s in sentences]
    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(_SEED)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, model_type="unigram", vocab_size=n_pieces,
            character_coverage=1.0, hard_vocab_limit=False, shuffle_input_sentence=False, num_threads=1,
            unk_id=list(specials).index(unk), unk_piece=unk, bos_id=-1, eos_id=-1, pad_id=-1,
            control_symbols=[s for s in specials if s != unk], minloglevel=2)
    except RuntimeError as err:
        raise ValueError(f"SentencePiece could not train on this text ({err}); give more text or a smaller "
                         f"vocab_size.") from err
    tok = tokenizer_from_proto(model.getvalue(), lowercase=lowercase, keep_accents=keep_accents)
    return add_sentinels(tok, extra_ids)


def _flags(normalizer: dict | None) -> tuple[bytes, bool, bool]:
    """(precompiled charsmap, lowercase, keep_accents) of a Unigram tokenizer's normalizer JSON."""
    steps = [] if normalizer is None else normalizer.get("normalizers", [normalizer])
    types = [s["type"] for s in steps]
    charsmap = next((base64.b64decode(s["precompiled_charsmap"]) for s in steps if s["type"] == "Precompiled"), b"")
    return charsmap, "Lowercase" in types, "StripAccents" not in types


def unigram_flags(tok: tokenizers.Tokenizer) -> dict[str, bool]:
    """``{"lowercase": …, "keep_accents": …}`` of a Unigram tokenizer built here (for its HF config)."""
    _, lowercase, keep_accents = _flags(json.loads(tok.to_str()).get("normalizer"))
    return {"lowercase": lowercase, "keep_accents": keep_accents}


def sentinel_count(tok: tokenizers.Tokenizer) -> int:
    """Number of T5 sentinels at the end of the vocabulary (``<extra_id_0>`` last, as T5 has them)."""
    size = tok.get_vocab_size()
    count = 0
    while count < size and tok.id_to_token(size - 1 - count) == SENTINEL.format(i=count):
        count += 1
    return count


def spm_model_proto(tok: tokenizers.Tokenizer) -> bytes:
    """The ``spiece.model`` of a Unigram tokenizer built by :func:`tokenizer_from_proto` (sentinels left out).

    Args:
      tok: A ``unigram``-kind tokenizer.

    Returns:
      A serialized SentencePiece ``ModelProto`` that ``sentencepiece.SentencePieceProcessor`` and transformers'
      ``T5Tokenizer`` / ``AlbertTokenizer`` / ``XLNetTokenizer`` load; special tokens become control pieces.

    Raises:
      ValueError: ``tok`` is not a Unigram tokenizer.
    """
    data = json.loads(tok.to_str())
    if data["model"]["type"] != "Unigram":
        raise ValueError(f"Only a Unigram tokenizer has a spiece.model; this one is {data['model']['type']}.")
    specials = {t["content"] for t in data["added_tokens"] if t["special"]}
    unk_id = data["model"]["unk_id"]
    vocab = data["model"]["vocab"][: len(data["model"]["vocab"]) - sentinel_count(tok)]
    charsmap, _, _ = _flags(data.get("normalizer"))
    m = sentencepiece_model_pb2.ModelProto()
    for i, (piece, score) in enumerate(vocab):
        kind = _Piece.UNKNOWN if i == unk_id else _Piece.CONTROL if piece in specials else _Piece.NORMAL
        m.pieces.add(piece=piece, score=score, type=kind)
    spec = m.trainer_spec
    spec.model_type = sentencepiece_model_pb2.TrainerSpec.UNIGRAM
    spec.vocab_size = len(vocab)
    spec.unk_id, spec.unk_piece = unk_id, vocab[unk_id][0]
    spec.bos_id = spec.eos_id = spec.pad_id = -1
    spec.control_symbols.extend(p for p in (v[0] for v in vocab) if p in specials and p != vocab[unk_id][0])
    norm = m.normalizer_spec
    # SentencePiece applies the precompiled map whatever the name; an empty one means no normalization.
    norm.name = "nmt_nfkc" if charsmap else "identity"
    norm.precompiled_charsmap = charsmap
    norm.add_dummy_prefix = norm.remove_extra_whitespaces = norm.escape_whitespaces = True
    return m.SerializeToString()


def write_spm_model(tok: tokenizers.Tokenizer, path: pathlib.Path) -> pathlib.Path:
    """Writes :func:`spm_model_proto` of ``tok`` to ``path`` and returns it."""
    path.write_bytes(spm_model_proto(tok))
    return path


__all__ = ["SENTINEL", "SPIECE_MODEL", "add_sentinels", "sentinel_count", "spm_model_proto", "tokenizer_from_proto",
           "train_unigram", "unigram_flags", "write_spm_model"]
