"""Code tokenisations for the rankers (Singh et al. 2024, "Better Generalization with Semantic IDs", §2.2 of
reference/anchors.md): how an item's code (c_1 .. c_L) becomes embedding-table tokens.

Glossary: N items, L code levels, K_l vocabulary of level l, T table_size, m tokens per item in a table.

    unigram       L tables; table l holds c_l (K_l rows). Today's features.
    prefix_ngram  L tables; table j holds the prefix (c_1 .. c_{j+1}) as its exact mixed-radix id when
                  prod(K_1 .. K_{j+1}) <= T (so length 1 is never hashed when K_1 <= T), else hashed into T rows.
    bigram        L - 1 tables; table l holds the adjacent pair (c_l, c_{l+1}), id c_l * K_{l+1} + c_{l+1} when
                  K_l * K_{l+1} <= T, else hashed into T rows. (Singh et al. pair levels without overlap, 4 x K^2
                  rows for L = 8; here every adjacent pair, as issue 15 asks.)
    spm           1 bag table; a SentencePiece unigram model trained on the TRAIN items' code sequences, each
                  item's pieces as a bag (qarm.quantize.spm_codes).

Hash: `hash_columns(ngram, seed=(seed << 8) | salt) % T`, splitmix64 over the n-gram's codes in order
(qarm.quantize.hashing); salt = j for prefix table j, 128 + l for bigram table l, so tables hash independently.

Every table gives each item a padded row of tokens: `tokens: (N, m) int64` in [0, rows), -1 past `lengths[i]`.
The same tables serve the target item and its history items (look rows up by item_idx). `token_coverage` is the
share of a query slice's tokens (cold items) that some training item also has: a token no training item has is
an embedding row the ranker never trained.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qarm.errors import QarmError
from qarm.quantize.config import TokenizeConfig
from qarm.quantize.hashing import hash_columns

FORMAT_VERSION = 1
META = "tokens.json"
SPM_FILE = "spm.model"


@dataclass(frozen=True, eq=False)
class TokenTable:
    """One embedding table: `name`, `rows` (its vocabulary), `tokens: (N, m) int64` in [0, rows) padded with -1,
    `lengths: (N,) int64` (item i's valid tokens are tokens[i, :lengths[i]]), `hashed` (ids were hashed)."""

    name: str
    rows: int
    tokens: np.ndarray
    lengths: np.ndarray
    hashed: bool = False

    @property
    def width(self) -> int:
        """m, the padded number of tokens per item."""
        return int(self.tokens.shape[1])

    def jagged(self, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of items `item_idx: (B,)` as (values (sum of lengths,) int64, lengths (B,) int64), the layout
        of a KeyedJaggedTensor key."""
        rows = self.tokens[np.asarray(item_idx)]
        return rows[rows >= 0], self.lengths[np.asarray(item_idx)]


@dataclass(frozen=True, eq=False)
class TokenTables:
    """A tokenisation of one code set: `scheme`, `tables`, the `config` it was built with, the code levels'
    vocabularies `vocab_sizes` (K_1 .. K_L), and for "spm" the serialised model `spm_model` (protobuf bytes) with
    the vocabulary asked for and the one trained (`spm_requested`, `spm_trained`)."""

    scheme: str
    tables: tuple[TokenTable, ...]
    config: TokenizeConfig
    vocab_sizes: tuple[int, ...]
    spm_model: bytes | None = None
    spm_requested: int | None = None
    spm_trained: int | None = None

    @property
    def n_items(self) -> int:
        """N, the items every table covers."""
        return int(self.tables[0].tokens.shape[0]) if self.tables else 0

    def save(self, path: str | os.PathLike[str]) -> None:
        """`<path>/tokens.json` + `<name>.tokens.npy` / `<name>.lengths.npy` per table [+ `spm.model`]; no pickle."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for t in self.tables:
            np.save(out / f"{t.name}.tokens.npy", t.tokens, allow_pickle=False)
            np.save(out / f"{t.name}.lengths.npy", t.lengths, allow_pickle=False)
        if self.spm_model is not None:
            (out / SPM_FILE).write_bytes(self.spm_model)
        meta = {"format_version": FORMAT_VERSION, "scheme": self.scheme, "config": asdict(self.config),
                "vocab_sizes": list(self.vocab_sizes), "spm_requested": self.spm_requested,
                "spm_trained": self.spm_trained,
                "tables": [{"name": t.name, "rows": t.rows, "hashed": t.hashed} for t in self.tables]}
        (out / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TokenTables:
        """Read what `save` wrote; a missing file or a wrong shape names the file."""
        d = Path(path)
        if not (d / META).is_file():
            raise QarmError(f"{d / META}: missing; expected token tables saved by TokenTables.save()")
        meta = json.loads((d / META).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise QarmError(f"{d / META}: expected format_version {FORMAT_VERSION}, got {meta.get('format_version')!r}")
        tables = []
        for t in meta["tables"]:
            files = [d / f"{t['name']}.tokens.npy", d / f"{t['name']}.lengths.npy"]
            for f in files:
                if not f.is_file():
                    raise QarmError(f"{f}: missing token table file")
            tokens, lengths = (np.load(f, allow_pickle=False) for f in files)
            if tokens.ndim != 2 or lengths.shape != (tokens.shape[0],):
                raise QarmError(f"{files[0]}: tokens (N, m) and lengths (N,) disagree: {tokens.shape} {lengths.shape}")
            tables.append(TokenTable(t["name"], int(t["rows"]), tokens, lengths, bool(t["hashed"])))
        spm = (d / SPM_FILE).read_bytes() if (d / SPM_FILE).is_file() else None
        return cls(meta["scheme"], tuple(tables), TokenizeConfig(**meta["config"]), tuple(meta["vocab_sizes"]),
                   spm, meta["spm_requested"], meta["spm_trained"])


def _check(codes: np.ndarray, vocab_sizes: Sequence[int], train_items: np.ndarray) -> tuple[np.ndarray, list[int],
                                                                                           np.ndarray]:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 1 or not np.issubdtype(codes.dtype, np.integer):
        raise QarmError(f"codes must be an integer (N, L) array with L >= 1, got {codes.dtype} {codes.shape}")
    sizes = [int(v) for v in vocab_sizes]
    if len(sizes) != codes.shape[1]:
        raise QarmError(f"vocab_sizes has {len(sizes)} entries for L={codes.shape[1]} code levels")
    if codes.size and (codes.min() < 0 or any(int(codes[:, j].max()) >= k for j, k in enumerate(sizes))):
        raise QarmError(f"codes must lie in [0, K_l) per level: maxima {codes.max(0).tolist()}, vocab_sizes {sizes}")
    mask = np.asarray(train_items)
    if mask.shape != (codes.shape[0],) or mask.dtype != np.bool_:
        raise QarmError(f"train_items must be a boolean (N={codes.shape[0]},) mask, got {mask.dtype} {mask.shape}")
    return codes.astype(np.int64, copy=False), sizes, mask


def _single(name: str, ids: np.ndarray, rows: int, hashed: bool) -> TokenTable:
    """A table with exactly one token per item: `ids: (N,)`."""
    return TokenTable(name, rows, ids.astype(np.int64)[:, None], np.ones(ids.shape[0], dtype=np.int64), hashed)


def _ngram_table(name: str, cols: np.ndarray, sizes: Sequence[int], table_size: int, salt: int) -> TokenTable:
    """Exact mixed-radix id of the n-gram `cols: (N, n)` when its vocabulary fits `table_size`, else its hash."""
    vocab = math.prod(sizes)
    if vocab <= table_size:
        ids = np.zeros(cols.shape[0], dtype=np.int64)
        for j, k in enumerate(sizes):
            ids = ids * int(k) + cols[:, j]
        return _single(name, ids, vocab, False)
    ids = (hash_columns(cols, seed=salt) % np.uint64(table_size)).astype(np.int64)
    return _single(name, ids, table_size, True)


def shared_unseen(codes: np.ndarray, sizes: Sequence[int], train_items: np.ndarray,
                  min_count: int = 2) -> tuple[np.ndarray, list[int]]:
    """Codes cut at their seen prefix: from the first level whose prefix fewer than `min_count` training items
    share, every level gets the extra id K_l (vocab K_l + 1), shared by all such items, training items included
    (qarm.quantize.fallback.seen_mask, "prefix"). codes: (N, L) int64 in [0, K_l); train_items: (N,) bool.
    Returns (codes (N, L), vocab sizes K_l + 1)."""
    from qarm.quantize.fallback import seen_mask

    ok = np.logical_and.accumulate(seen_mask(codes, train_items, "prefix", min_count), axis=1)
    k = np.asarray(sizes, dtype=np.int64)
    return np.where(ok, codes, k[None, :]), [int(v) + 1 for v in sizes]


def tokenize_codes(codes: np.ndarray, vocab_sizes: Sequence[int], train_items: np.ndarray,
                   cfg: TokenizeConfig, spm_model: bytes | None = None) -> TokenTables:
    """Token tables of `codes: (N, L) int64` (level l in [0, vocab_sizes[l])) under `cfg.scheme`;
    `train_items: (N,) bool` marks the items with a training impression (only "spm" reads it: it trains on
    their code sequences, and cfg.unseen = "shared" cuts the codes at their seen prefix: `shared_unseen`).
    spm_model: under "spm", encode with this trained model (another code set's TokenTables.spm_model) instead of
    training one, so the table has that model's rows (the code controls reuse the aligned codes' tokenizer)."""
    codes, sizes, train = _check(codes, vocab_sizes, train_items)
    if cfg.unseen == "shared":
        codes, sizes = shared_unseen(codes, sizes, train, cfg.unseen_min_count)
    n_levels, seed = codes.shape[1], cfg.seed << 8
    fitted_model, spm_model, requested, trained = spm_model, None, None, None
    if cfg.scheme == "unigram":
        tables = tuple(_single(f"unigram_{j + 1}", codes[:, j], sizes[j], False) for j in range(n_levels))
    elif cfg.scheme == "prefix_ngram":
        tables = tuple(_ngram_table(f"prefix_{j + 1}", codes[:, : j + 1], sizes[: j + 1], cfg.table_size, seed | j)
                       for j in range(n_levels))
    elif cfg.scheme == "bigram":
        if n_levels < 2:
            raise QarmError(f"the bigram tokenisation needs codes with L >= 2 levels, got L={n_levels}")
        tables = tuple(_ngram_table(f"bigram_{j + 1}_{j + 2}", codes[:, j:j + 2], sizes[j:j + 2], cfg.table_size,
                                    seed | (128 + j)) for j in range(n_levels - 1))
    elif cfg.scheme == "spm":
        from qarm.quantize.spm_codes import encode_pieces, piece_count, train_spm

        if fitted_model is None:
            spm_model, trained = train_spm(codes[train], sizes, cfg.spm_vocab_size, seed=cfg.seed)
        else:
            spm_model, trained = fitted_model, piece_count(fitted_model)
        tokens, lengths = encode_pieces(spm_model, codes, sizes)
        tables, requested = (TokenTable("spm", trained, tokens, lengths, False),), cfg.spm_vocab_size
    else:
        raise QarmError(f"unknown tokenisation scheme {cfg.scheme!r}")
    return TokenTables(cfg.scheme, tables, cfg, tuple(sizes), spm_model, requested, trained)


@dataclass(frozen=True)
class TokenCoverage:
    """Per table (names in `tables`): `coverage`, the share of the query items' tokens (with multiplicity) that
    appear among the train items' tokens in that table (None when the query items have no tokens), and
    `query_tokens`, how many tokens that is; `overall` pools every table; `n_query_items` query items."""

    scheme: str
    tables: tuple[str, ...]
    coverage: tuple[float | None, ...]
    query_tokens: tuple[int, ...]
    overall: float | None
    n_query_items: int


def token_coverage(tables: TokenTables, train_items: np.ndarray, query_items: np.ndarray) -> TokenCoverage:
    """How much of the query items' tokens the training items cover. train_items, query_items: (N,) bool masks
    (the report's cold-item test slice: query = cold items of the test split)."""
    masks = []
    for name, mask in (("train_items", train_items), ("query_items", query_items)):
        mask = np.asarray(mask)
        if mask.shape != (tables.n_items,) or mask.dtype != np.bool_:
            raise QarmError(f"{name} must be a boolean (N={tables.n_items},) mask, got {mask.dtype} {mask.shape}")
        masks.append(mask)
    train, query = masks
    cov, counts, seen_total = [], [], 0
    for t in tables.tables:
        seen = np.zeros(t.rows, dtype=bool)
        train_tok = t.tokens[train]
        seen[train_tok[train_tok >= 0]] = True
        q = t.tokens[query]
        q = q[q >= 0]
        hits = int(seen[q].sum())
        cov.append(hits / q.size if q.size else None)
        counts.append(int(q.size))
        seen_total += hits
    total = sum(counts)
    return TokenCoverage(tables.scheme, tuple(t.name for t in tables.tables), tuple(cov), tuple(counts),
                         seen_total / total if total else None, int(query.sum()))
