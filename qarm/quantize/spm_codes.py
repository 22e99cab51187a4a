"""SentencePiece over code sequences (Singh et al. 2024's SPM-SID): a unigram-LM vocabulary of code pieces,
learned on the training items' codes, each item's code cut into pieces that become one bag of tokens.

Glossary: N items, L code levels, K_l vocabulary of level l.

Codes become text one character per level: level l's code c is the character U+F0000 + (K_1 + .. + K_{l-1}) + c,
in Unicode's supplementary private use area A (65,534 code points, none of which any normaliser or script rule
touches), so the same code at two levels is two different symbols and an item's code is an L-character string.
Training (sentencepiece, model_type=unigram): one sentence per training item, identity normalisation, no dummy
prefix, no BOS/EOS, character_coverage 1 (every symbol a training item uses is a piece), pieces of at most L
characters, one thread, all sentences in order, seeded: the model is a function of the training codes and the
seed. `vocab_size` is a soft limit (sentencepiece's hard_vocab_limit=false): the trained vocabulary is at most
the one asked for and at least the training alphabet + 1; it stops below the request when the training codes
support no more pieces. Piece 0 is <unk>: a cold item's symbol no training item has becomes it.

Pinned to sentencepiece 0.2.1: 0.2.3's seed-piece extraction keeps no multi-character piece of multi-byte UTF-8
text (every model is the bare alphabet); tests/qarm/test_tokenize.py checks that pieces span levels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from qarm.errors import QarmError

BASE = 0xF0000
CAPACITY = 0xFFFFD - BASE + 1  # code points U+F0000 .. U+FFFFD


def code_strings(codes: np.ndarray, vocab_sizes: Sequence[int]) -> list[str]:
    """`codes: (N, L)` int64 -> N strings of L private-use characters (module docstring)."""
    offsets = np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]).astype(np.int64)
    if int(np.sum(vocab_sizes)) > CAPACITY:
        raise QarmError(f"spm tokenisation: the levels' vocabularies sum to {int(np.sum(vocab_sizes))} symbols, "
                        f"more than the {CAPACITY} private-use characters it maps codes to")
    points = BASE + offsets[None, :] + np.asarray(codes, dtype=np.int64)
    return ["".join(map(chr, row)) for row in points.tolist()]


def train_spm(train_codes: np.ndarray, vocab_sizes: Sequence[int], vocab_size: int, *,
              seed: int) -> tuple[bytes, int]:
    """Train the unigram model on `train_codes: (n, L)` (the training items' codes) -> (serialised model proto,
    trained vocabulary size)."""
    import sentencepiece as spm

    if train_codes.shape[0] == 0:
        raise QarmError("spm tokenisation needs at least one training item with a code")
    sentences = code_strings(train_codes, vocab_sizes)
    alphabet = int(np.unique(train_codes + np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]])[None, :]).size)
    buf = io.BytesIO()
    spm.set_random_generator_seed(int(seed))
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, model_type="unigram",
        vocab_size=max(int(vocab_size), alphabet + 1), hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        split_by_unicode_script=False, max_sentencepiece_length=train_codes.shape[1], unk_id=0, bos_id=-1,
        eos_id=-1, pad_id=-1, num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2,
    )
    model = buf.getvalue()
    return model, int(spm.SentencePieceProcessor(model_proto=model).get_piece_size())


def piece_count(model: bytes) -> int:
    """The vocabulary (pieces, <unk> included) of a trained model."""
    import sentencepiece as spm

    return int(spm.SentencePieceProcessor(model_proto=model).get_piece_size())


def encode_pieces(model: bytes, codes: np.ndarray, vocab_sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each item's pieces under `model`: codes (N, L) -> (tokens (N, m) int64 piece ids padded with -1,
    lengths (N,) int64), m = the most pieces of any item (<= L)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    pieces = sp.encode(code_strings(codes, vocab_sizes), out_type=int)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    tokens = np.full((len(pieces), int(lengths.max(initial=1))), -1, dtype=np.int64)
    for i, p in enumerate(pieces):
        tokens[i, : len(p)] = p
    return tokens, lengths


def piece_strings(model: bytes, ids: Sequence[int]) -> list[str]:
    """The pieces `ids` as text (for inspection and tests)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    return [sp.id_to_piece(int(i)) for i in ids]
