"""Code tokenisations (Singh et al. 2024) by hand on a 4-item example; the hash against a pure-Python splitmix64;
SentencePiece trained deterministically with pieces that cover each item's code; token coverage by hand."""

from __future__ import annotations

import numpy as np
import pytest

from qarm.errors import QarmConfigError, QarmError
from qarm.quantize import TokenizeConfig, TokenTables, token_coverage, tokenize_codes
from qarm.quantize.spm_codes import BASE, code_strings, piece_strings

CODES = np.array([[0, 1, 2], [0, 1, 3], [1, 1, 2], [2, 0, 0]])
VOCAB = (3, 2, 4)
TRAIN = np.array([True, True, False, False])
MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """Steele et al.'s splitmix64 on Python ints, the slow reference of qarm.quantize.hashing."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _hash(cols: list[int], salt: int, rows: int) -> int:
    h = _splitmix64(salt)
    for c in cols:
        h = _splitmix64(h ^ c)
    return h % rows


def _tables(scheme: str, **kw: int) -> TokenTables:
    return tokenize_codes(CODES, VOCAB, TRAIN, TokenizeConfig(scheme=scheme, **kw))  # type: ignore[arg-type]


def _ids(tt: TokenTables) -> dict[str, list[int]]:
    return {t.name: t.tokens[:, 0].tolist() for t in tt.tables}


def test_unigram_is_the_codes() -> None:
    tt = _tables("unigram")
    assert _ids(tt) == {"unigram_1": [0, 0, 1, 2], "unigram_2": [1, 1, 1, 0], "unigram_3": [2, 3, 2, 0]}
    assert [t.rows for t in tt.tables] == [3, 2, 4] and not any(t.hashed for t in tt.tables)
    assert all(t.lengths.tolist() == [1, 1, 1, 1] for t in tt.tables)


def test_prefix_ngrams_exact_while_they_fit_then_hashed() -> None:
    tt = _tables("prefix_ngram", table_size=6, seed=3)
    ids = _ids(tt)
    assert ids["prefix_1"] == [0, 0, 1, 2]  # K_1 = 3 <= 6: not hashed
    assert ids["prefix_2"] == [0 * 2 + 1, 0 * 2 + 1, 1 * 2 + 1, 2 * 2 + 0]  # 3 x 2 = 6 <= 6: mixed radix
    salt = (3 << 8) | 2  # seed 3, prefix table index 2
    assert ids["prefix_3"] == [_hash(row, salt, 6) for row in CODES.tolist()]  # 24 > 6: hashed into 6 rows
    assert [(t.rows, t.hashed) for t in tt.tables] == [(3, False), (6, False), (6, True)]
    assert _ids(_tables("prefix_ngram", table_size=6, seed=3)) == ids  # deterministic
    assert _ids(_tables("prefix_ngram", table_size=6, seed=4))["prefix_1"] == ids["prefix_1"]
    assert _ids(_tables("prefix_ngram", table_size=24))["prefix_3"] == [0 * 8 + 1 * 4 + 2, 7, 14, 16]


def test_bigrams_of_adjacent_levels() -> None:
    tt = _tables("bigram", table_size=8)
    assert _ids(tt) == {"bigram_1_2": [1, 1, 3, 4], "bigram_2_3": [1 * 4 + 2, 1 * 4 + 3, 6, 0]}
    assert [t.rows for t in tt.tables] == [6, 8]  # K_l * K_{l+1}
    hashed = _tables("bigram", table_size=7)
    salt = (0 << 8) | (128 + 1)
    assert _ids(hashed)["bigram_2_3"] == [_hash(row[1:], salt, 7) for row in CODES.tolist()]
    assert [(t.rows, t.hashed) for t in hashed.tables] == [(6, False), (7, True)]
    with pytest.raises(QarmError, match="L >= 2"):
        tokenize_codes(CODES[:, :1], VOCAB[:1], TRAIN, TokenizeConfig(scheme="bigram"))


def _spm_case() -> tuple[np.ndarray, np.ndarray]:
    """40 items whose first two levels always agree (c_2 = c_1), so the pair is a frequent piece; item 39 is
    cold and uses a level-3 code (7) no training item has."""
    rng = np.random.default_rng(0)
    c1 = rng.integers(0, 4, 40)
    codes = np.stack([c1, c1, rng.integers(0, 7, 40)], axis=1)
    codes[39, 2] = 7
    train = np.ones(40, dtype=bool)
    train[[37, 38, 39]] = False
    return codes, train


def test_spm_pieces_cover_each_item_and_training_is_deterministic() -> None:
    codes, train = _spm_case()
    cfg = TokenizeConfig(scheme="spm", spm_vocab_size=64, seed=5)
    a = tokenize_codes(codes, (4, 4, 8), train, cfg)
    b = tokenize_codes(codes, (4, 4, 8), train, cfg)
    assert a.spm_model == b.spm_model and np.array_equal(a.tables[0].tokens, b.tables[0].tokens)
    (t,) = a.tables
    assert t.name == "spm" and t.rows == a.spm_trained and a.spm_requested == 64
    assert t.rows <= 64 and t.tokens.shape == (40, t.width) and t.width <= 3
    strings = code_strings(codes, (4, 4, 8))
    assert strings[0] == "".join(chr(BASE + off + c) for off, c in zip((0, 4, 8), codes[0]))
    for i in range(39):  # every item but the cold one: its pieces spell its code
        ids = t.tokens[i, : t.lengths[i]]
        assert (t.tokens[i, t.lengths[i]:] == -1).all()
        assert "".join(piece_strings(a.spm_model, ids)) == strings[i]
    pieces = piece_strings(a.spm_model, range(t.rows))
    assert any(len(p) >= 2 for p in pieces[1:]), "no multi-level piece learned (sentencepiece 0.2.3 regression?)"
    assert 0 in t.tokens[39, : t.lengths[39]]  # the unseen symbol falls to <unk>, id 0


def test_token_coverage_by_hand() -> None:
    query = ~TRAIN  # items 2 (1, 1, 2) and 3 (2, 0, 0); training items 0 (0, 1, 2) and 1 (0, 1, 3)
    cov = token_coverage(_tables("unigram"), TRAIN, query)
    assert cov.tables == ("unigram_1", "unigram_2", "unigram_3")
    # level 1: {1, 2} vs {0} -> 0/2; level 2: {1, 0} vs {1} -> 1/2; level 3: {2, 0} vs {2, 3} -> 1/2
    assert cov.coverage == pytest.approx((0.0, 0.5, 0.5))
    assert cov.query_tokens == (2, 2, 2) and cov.overall == pytest.approx(2 / 6) and cov.n_query_items == 2
    pre = token_coverage(_tables("prefix_ngram", table_size=100), TRAIN, query)
    assert pre.coverage == pytest.approx((0.0, 0.0, 0.0))  # no query prefix is a training prefix
    empty = token_coverage(_tables("unigram"), TRAIN, np.zeros(4, dtype=bool))
    assert empty.coverage == (None, None, None) and empty.overall is None
    codes, train = _spm_case()
    tt = tokenize_codes(codes, (4, 4, 8), train, TokenizeConfig(scheme="spm", spm_vocab_size=64))
    spm_cov = token_coverage(tt, train, ~train)
    seen = set(tt.tables[0].tokens[train].ravel().tolist()) - {-1}
    q = [v for v in tt.tables[0].tokens[~train].ravel().tolist() if v >= 0]
    assert spm_cov.coverage[0] == pytest.approx(sum(v in seen for v in q) / len(q)) and spm_cov.coverage[0] < 1.0


def test_save_load_round_trip_without_pickle(tmp_path) -> None:
    codes, train = _spm_case()
    for scheme in ("prefix_ngram", "spm"):
        tt = tokenize_codes(codes, (4, 4, 8), train, TokenizeConfig(scheme=scheme, table_size=8))
        tt.save(tmp_path / scheme)
        back = TokenTables.load(tmp_path / scheme)
        assert back.scheme == scheme and back.config == tt.config and back.vocab_sizes == (4, 4, 8)
        assert back.spm_model == tt.spm_model and back.spm_trained == tt.spm_trained
        for x, y in zip(tt.tables, back.tables):
            assert (x.name, x.rows, x.hashed) == (y.name, y.rows, y.hashed)
            np.testing.assert_array_equal(x.tokens, y.tokens)
            np.testing.assert_array_equal(x.lengths, y.lengths)
    names = sorted(p.name for p in (tmp_path / "spm").iterdir())
    assert names == ["spm.lengths.npy", "spm.model", "spm.tokens.npy", "tokens.json"]
    with pytest.raises(QarmError, match="missing"):
        TokenTables.load(tmp_path / "nowhere")


def test_jagged_batch_layout() -> None:
    codes, train = _spm_case()
    (t,) = tokenize_codes(codes, (4, 4, 8), train, TokenizeConfig(scheme="spm")).tables
    values, lengths = t.jagged(np.array([3, 0]))
    assert lengths.tolist() == [t.lengths[3], t.lengths[0]]
    assert values.tolist() == t.tokens[3, : t.lengths[3]].tolist() + t.tokens[0, : t.lengths[0]].tolist()


def test_bad_inputs_and_settings_raise() -> None:
    cfg = TokenizeConfig()
    with pytest.raises(QarmError, match="boolean"):
        tokenize_codes(CODES, VOCAB, np.array([1, 1, 0, 0]), cfg)
    with pytest.raises(QarmError, match="vocab_sizes"):
        tokenize_codes(CODES, (3, 2), TRAIN, cfg)
    with pytest.raises(QarmError, match=r"\[0, K_l\)"):
        tokenize_codes(CODES, (3, 2, 3), TRAIN, cfg)
    with pytest.raises(QarmConfigError, match="scheme"):
        TokenizeConfig(scheme="trigram")  # type: ignore[arg-type]
    with pytest.raises(QarmConfigError, match="table_size"):
        TokenizeConfig(table_size=0)
    with pytest.raises(QarmError, match="at least one training item"):
        tokenize_codes(CODES, VOCAB, np.zeros(4, dtype=bool), TokenizeConfig(scheme="spm"))


def test_unseen_shared_cuts_codes_at_their_seen_prefix() -> None:
    # training items 0-2: prefix (0,) is shared by two of them, (1,) and every full code by one only;
    # cold item 3 shares (0,), cold item 4 shares nothing
    codes = np.array([[0, 1], [0, 2], [1, 0], [0, 3], [2, 2]])
    train = np.array([True, True, True, False, False])
    keep = tokenize_codes(codes, [3, 4], train, TokenizeConfig())
    shared = tokenize_codes(codes, [3, 4], train, TokenizeConfig(unseen="shared"))  # min count 2
    assert [t.rows for t in shared.tables] == [4, 5]  # one extra id per level
    got = np.stack([t.tokens[:, 0] for t in shared.tables], 1)
    assert got.tolist() == [[0, 4], [0, 4], [3, 4], [0, 4], [3, 4]]  # rare prefixes of training items cut too
    cold = ~train
    assert token_coverage(shared, train, cold).overall == pytest.approx(1.0)  # every cold token is trained
    assert token_coverage(keep, train, cold).overall == pytest.approx(0.5)  # rows 0 (level 1), 2 (level 2)
    once = tokenize_codes(codes, [3, 4], train, TokenizeConfig(unseen="shared", unseen_min_count=1))
    assert np.stack([t.tokens[:, 0] for t in once.tables], 1).tolist() == [[0, 1], [0, 2], [1, 0], [0, 4], [3, 4]]
    with pytest.raises(QarmConfigError, match="unseen"):
        TokenizeConfig(unseen="drop")
