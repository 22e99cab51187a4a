"""Pair mining: Swing on a hand-computed graph and against the literal reference, U2I histories and
triggers on a hand-built example and against slow references, the combined pairs frame."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qarm.errors import QarmError
from qarm.pairs import PairsConfig, SwingConfig, U2IConfig, mine_pairs, swing_topk
from qarm.pairs.history import history_jagged
from qarm.pairs.swing import merge_swing_parts, swing_part, swing_reference
from qarm.pairs.two_tower import RowSparseAdam, TwoTower
from qarm.pairs.u2i import (
    histories_reference,
    positive_histories,
    positive_windows,
    sorted_positives,
    train_two_tower,
    u2i_triggers,
    u2i_triggers_reference,
)


def positives(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """(user_idx, item_idx, ts) rows -> a TRAIN positives frame with the contract's dtypes."""
    u, i, t = zip(*rows) if rows else ((), (), ())
    return pl.DataFrame(
        {"user_idx": list(u), "item_idx": list(i), "ts": list(t)},
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64},
    )


# Four users: u0 {0,1,2}, u1 {0,1,2}, u2 {0,1}, u3 {1,2,3}. User pairs and their overlaps:
# u0u1 {0,1,2}: 1/(a+3) to (0,1),(0,2),(1,2); u0u2 {0,1}, u1u2 {0,1}: 1/(a+2) to (0,1);
# u0u3 {1,2}, u1u3 {1,2}: 1/(a+2) to (1,2); u2u3 {1}: no pair. So
# s(0,1) = s(1,2) = 1/(a+3) + 2/(a+2), s(0,2) = 1/(a+3), item 3 pairs with nobody (one user pair max).
GRAPH = {0: {0, 1, 2}, 1: {0, 1, 2}, 2: {0, 1}, 3: {1, 2, 3}}


def graph_frame(graph: dict[int, set[int]]) -> pl.DataFrame:
    return positives([(u, i, 10 * u + i) for u, items in graph.items() for i in sorted(items)])


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_swing_on_hand_computed_graph(alpha: float) -> None:
    big, small = 1 / (alpha + 3) + 2 / (alpha + 2), 1 / (alpha + 3)
    nb = swing_topk(graph_frame(GRAPH), 4, SwingConfig(alpha=alpha, top_k=5, min_support=2))
    got = {(i, j): s for i, j, s in nb.rows()}
    expected = {(0, 1): big, (1, 0): big, (1, 2): big, (2, 1): big, (0, 2): small, (2, 0): small}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6)
    ref = swing_reference(GRAPH, alpha=alpha)
    assert ref[(0, 1)] == pytest.approx(big) and ref[(0, 2)] == pytest.approx(small)
    # per item, neighbours come best first: item 0 -> [1, 2]
    assert nb.filter(pl.col("item_idx") == 0)["neighbor_idx"].to_list() == [1, 2]


def test_swing_skips_users_above_the_degree_cap() -> None:
    """A heavy user u4 (5 positives) joins GRAPH: under max_user_degree = 3 it is skipped, whole (not
    subsampled), so the scores are GRAPH's hand-computed ones; without the cap it changes them."""
    heavy = GRAPH | {4: {0, 1, 2, 3, 4}}
    capped = swing_topk(graph_frame(heavy), 5, SwingConfig(top_k=5, max_user_degree=3))
    assert capped.equals(swing_topk(graph_frame(GRAPH), 5, SwingConfig(top_k=5)))
    big = 1 / 4 + 2 / 3
    assert {(i, j): s for i, j, s in capped.rows()}[(0, 1)] == pytest.approx(big)
    uncapped = swing_topk(graph_frame(heavy), 5, SwingConfig(top_k=5, max_user_degree=5))  # 5 is not > 5: kept
    assert {(i, j): s for i, j, s in uncapped.rows()}[(0, 1)] > big
    with pytest.raises(QarmError, match=r"SwingConfig.max_user_degree: expected an integer >= 2"):
        SwingConfig(max_user_degree=1)


@settings(max_examples=20, deadline=None)
@given(
    st.dictionaries(st.integers(0, 7), st.sets(st.integers(0, 9), min_size=1, max_size=6), min_size=1, max_size=8),
    st.integers(2, 6),
    st.sampled_from([0.0, 0.5]),
)
def test_swing_degree_cap_equals_reference_without_heavy_users(graph: dict[int, set[int]], cap: int,
                                                               power: float) -> None:
    cfg = SwingConfig(top_k=10, min_support=2, max_users_per_item=100, user_weight_power=power, max_user_degree=cap)
    got = {(i, j): s for i, j, s in swing_topk(graph_frame(graph), 10, cfg).rows()}
    kept = {u: items for u, items in graph.items() if len(items) <= cap}
    ref = {k: v for k, v in swing_reference(kept, 1.0, power).items() if v > 0}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-5)


def test_swing_min_support_and_top_k() -> None:
    nb = swing_topk(graph_frame(GRAPH), 4, SwingConfig(top_k=1, min_support=3))
    # support (common users): (0,1) 3 users, (1,2) 3 users, (0,2) 2 users -> dropped at min_support 3
    assert sorted(nb.select("item_idx", "neighbor_idx").rows()) == [(0, 1), (1, 0), (2, 1)]


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(st.integers(0, 7), st.sets(st.integers(0, 9), min_size=1, max_size=6), min_size=1, max_size=8),
    st.sampled_from([0.0, 0.5]),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_swing_fast_path_equals_reference(graph: dict[int, set[int]], power: float, alpha: float) -> None:
    cfg = SwingConfig(alpha=alpha, top_k=10, min_support=2, max_users_per_item=100, user_weight_power=power)
    nb = swing_topk(graph_frame(graph), 10, cfg)
    got = {(i, j): s for i, j, s in nb.rows()}
    ref = {k: v for k, v in swing_reference(graph, alpha, power).items() if v > 0}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-5)


def test_histories_follow_the_convention() -> None:
    # user 0: item 5 @ ts 1, items 2 and 1 @ ts 2 (same ts: ordered by item_idx), item 4 @ ts 3
    pos = sorted_positives(positives([(0, 5, 1), (0, 2, 2), (0, 1, 2), (0, 4, 3), (1, 3, 1)]))
    hist = positive_histories(pos, window=2)
    # sorted rows: (0,5,1) (0,1,2) (0,2,2) (0,4,3) (1,3,1); same-ts items never see each other
    assert hist.tolist() == [[-1, -1], [-1, 5], [-1, 5], [1, 2], [-1, -1]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(0, 5)), min_size=1, max_size=30),
       st.integers(1, 6))
def test_histories_equal_reference(rows: list[tuple[int, int, int]], window: int) -> None:
    pos = sorted_positives(positives(rows))
    fast = [[int(i) for i in h if i >= 0] for h in positive_histories(pos, window)]
    assert fast == histories_reference(pos, window)


def test_windows_are_the_dense_histories_on_demand() -> None:
    """positive_windows (O(P) memory, padded per batch) gives the dense histories, and training and trigger
    mining read them identically (same embeddings, same triggers)."""
    pos = sorted_positives(synthetic_positives(n_users=12, per_user=6))
    dense, windows = positive_histories(pos, 4), positive_windows(pos, 4)
    assert windows.items.dtype == np.int32 and windows.start.shape == (len(pos),)
    rows = np.array([5, 0, 17, 3])
    assert (windows.take(rows) == dense[rows]).all()
    assert (windows.nonempty() == (dense >= 0).any(axis=1)).all()
    has = windows.nonempty()
    cfg = U2IConfig(dim=4, epochs=1, batch_size=8)
    targets = pos["item_idx"].to_numpy()[has]
    a, _ = train_two_tower(dense[has], targets, 40, cfg, seed=1)
    b, _ = train_two_tower(windows.select(has), targets, 40, cfg, seed=1)
    assert np.array_equal(a, b)
    assert u2i_triggers(pos, dense, a, chunk=5).equals(u2i_triggers(pos, windows, a, chunk=5))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 9), st.integers(0, 6)), min_size=1, max_size=40),
       st.integers(1, 5), st.data())
def test_jagged_histories_are_the_padded_ones_without_pad(rows: list[tuple[int, int, int]], window: int,
                                                          data: st.DataObject) -> None:
    """history_jagged (windows and dense arrays alike): row b's slice is the non-PAD entries of its padded row,
    in order; empty rows give empty slices."""
    pos = sorted_positives(positives(rows))
    dense, windows = positive_histories(pos, window), positive_windows(pos, window)
    pick = np.array(data.draw(st.lists(st.integers(0, len(pos) - 1), max_size=12)), dtype=np.int64)
    for source in (dense, windows):
        values, offsets = history_jagged(source, pick)
        assert values.dtype == np.int64 and offsets.dtype == np.int64 and offsets.shape == (len(pick) + 1,)
        assert offsets[0] == 0 and offsets[-1] == len(values)
        for b, r in enumerate(pick):
            assert values[offsets[b]:offsets[b + 1]].tolist() == [int(i) for i in dense[r] if i >= 0]


def test_jagged_user_tower_equals_the_padded_one() -> None:
    """TwoTower.user_jagged (what training calls) gives the padded `user`'s output and gradients: every row
    length from empty to the full window, repeats and the last item id included."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    n, t = 30, 6
    lengths = [0, 1, 6, 3, 2, 6, 0, 5]
    rng = np.random.default_rng(3)
    padded = np.full((len(lengths), t), -1, dtype=np.int64)
    for b, k in enumerate(lengths):
        padded[b, t - k:] = rng.integers(0, n, k)
    padded[2, -1] = padded[2, 0] = n - 1
    values, offsets = history_jagged(padded, np.arange(len(lengths)))
    outs, grads = [], []
    for jagged in (False, True):
        model = TwoTower(n, 5).double()
        torch.manual_seed(1)
        model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items()})
        user = (model.user_jagged(torch.from_numpy(values), torch.from_numpy(offsets)) if jagged
                else model.user(torch.from_numpy(padded)))
        (user * torch.linspace(-1, 1, user.numel(), dtype=user.dtype).view_as(user)).sum().backward()
        outs.append(user.detach())
        grads.append({k: p.grad[:n] if k == "hist.weight" else p.grad for k, p in model.named_parameters()
                      if p.grad is not None})
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)
    empty = torch.nn.functional.normalize(model.user_proj.bias.detach(), dim=0)  # an empty history pools to 0
    torch.testing.assert_close(outs[0][[0, 6]], empty.expand(2, -1), rtol=0, atol=1e-12)
    assert grads[0].keys() == grads[1].keys() == {"hist.weight", "user_proj.weight", "user_proj.bias"}
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=0, atol=1e-12)


def test_trigger_on_hand_built_example() -> None:
    # U2I item space (2-d): item 0 points at the target 3, item 2 diagonal, item 1 orthogonal.
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    pos = sorted_positives(positives([(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)]))
    full = u2i_triggers(pos, positive_histories(pos, 50), emb)
    # target 3: cos(0,3)=0.994 > cos(2,3)=0.78 > cos(1,3)=0.11 -> trigger 0.
    # target 2 (diagonal): items 0 and 1 tie at cos 0.707 -> the most recent, item 1.
    # target 4 (= item 1's direction): item 1, cos 1.
    assert dict(zip(full["target_idx"].to_list(), full["trigger_idx"].to_list())) == {1: 0, 2: 1, 3: 0, 4: 1}
    # window 2: target 3 only sees items 1, 2 -> trigger 2
    short = u2i_triggers(pos, positive_histories(pos, 2), emb)
    assert short.filter(pl.col("target_idx") == 3)["trigger_idx"].item() == 2
    assert short.filter(pl.col("target_idx") == 3)["weight"].item() == pytest.approx((0.9 + 0.1) / np.sqrt(2 * 0.82), rel=1e-5)


def test_trigger_ties_go_to_the_most_recent() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    pos = sorted_positives(positives([(0, 0, 1), (0, 1, 2), (0, 2, 3)]))
    out = u2i_triggers(pos, positive_histories(pos, 50), emb)
    assert out.filter(pl.col("target_idx") == 2)["trigger_idx"].item() == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(0, 5)), min_size=1, max_size=30),
       st.integers(1, 5), st.integers(0, 10_000))
def test_triggers_equal_reference(rows: list[tuple[int, int, int]], window: int, seed: int) -> None:
    pos = sorted_positives(positives(rows))
    emb = np.random.default_rng(seed).standard_normal((8, 3)).astype(np.float32)
    fast = u2i_triggers(pos, positive_histories(pos, window), emb)
    ref = [r for r in u2i_triggers_reference(pos, window, emb) if r is not None]
    assert fast.select("user_idx", "trigger_idx", "target_idx").rows() == ref


def synthetic_positives(n_users: int = 60, n_items: int = 40, per_user: int = 12, seed: int = 0) -> pl.DataFrame:
    """Users in 4 taste groups, each positive drawn from the group's 10 items (planted structure)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        g = u % 4
        for t, i in enumerate(rng.choice(10, size=per_user, replace=True)):
            rows.append((u, int(g * 10 + i), t))
    return positives(rows)


def test_two_tower_loss_falls() -> None:
    pos = sorted_positives(synthetic_positives())
    hist = positive_histories(pos, 50)
    has = (hist >= 0).any(axis=1)
    emb, losses = train_two_tower(hist[has], pos["item_idx"].to_numpy()[has], 40, U2IConfig(dim=16, epochs=8, batch_size=64))
    assert emb.shape == (40, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert losses[-1] < losses[0]


def test_mine_pairs_frame_and_stats() -> None:
    train = synthetic_positives()
    cfg = U2IConfig(dim=16, epochs=3, batch_size=64)
    mined = mine_pairs(train, 50, PairsConfig(u2i=cfg, swing=SwingConfig(top_k=3)))
    pairs, stats = mined.pairs, mined.stats
    assert mined.u2i_item_embeddings.shape == (50, 16)
    assert pairs.schema == pl.Schema(
        {"trigger_idx": pl.Int32, "target_idx": pl.Int32, "source": pl.Utf8, "weight": pl.Float32}
    )
    assert (pairs["trigger_idx"] < pairs["target_idx"]).all()  # canonical, no self pairs
    assert pairs.select("trigger_idx", "target_idx").is_unique().all()
    assert set(pairs["source"].unique()) == {"u2i", "i2i"}
    per = stats.pairs_per_source
    assert per["u2i"] + per["i2i"] == stats.n_pairs == len(pairs)
    found = stats.unique_pairs_found_per_source
    assert found["u2i"] + found["i2i"] - stats.pairs_in_both_sources == len(pairs)
    covered = set(pairs["trigger_idx"].to_list()) | set(pairs["target_idx"].to_list())
    assert stats.item_coverage == pytest.approx(len(covered) / 50)  # items 40..49 never seen
    assert stats.sources == ("u2i", "i2i") and len(stats.u2i_loss_per_epoch) == 3
    # planted groups: most pairs stay inside a taste group
    same = (pairs["trigger_idx"] // 10 == pairs["target_idx"] // 10).mean()
    assert same > 0.8
    only_i2i = mine_pairs(train, 50, PairsConfig(sources=("i2i",), swing=SwingConfig(top_k=3)))
    assert set(only_i2i.pairs["source"].unique()) == {"i2i"} and only_i2i.u2i_item_embeddings is None


def test_mine_pairs_rejects_bad_input() -> None:
    train = synthetic_positives(n_users=4, per_user=3)
    with pytest.raises(QarmError, match="PairsConfig.sources: expected a non-empty list of distinct sources"):
        PairsConfig(sources=())
    with pytest.raises(QarmError, match=r"SwingConfig.min_support: expected an integer >= 2"):
        SwingConfig(min_support=1)
    with pytest.raises(QarmError, match="n_items"):
        mine_pairs(train, 5)
    with pytest.raises(QarmError, match="'ts'"):
        mine_pairs(train.drop("ts"), 40)


def test_swing_user_cap_is_seeded() -> None:
    train = synthetic_positives(n_users=40, per_user=8)
    cfg = SwingConfig(top_k=4, max_users_per_item=4)  # every item has more than 4 users: sampling kicks in
    a = swing_topk(train, 40, cfg, seed=3)
    assert a.equals(swing_topk(train, 40, cfg, seed=3))
    assert len(a) > 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_swing_parts_over_ranks_equal_one_rank(world_size: int) -> None:
    """Each item samples its users from its own (seed, item_idx) generator, so the parts computed on W "ranks"
    (here in one process) put together are the one-rank result exactly, sampled items included."""
    train = synthetic_positives(n_users=40, per_user=8)
    cfg = SwingConfig(top_k=4, max_users_per_item=4)  # every item samples 4 of its users
    one = swing_topk(train, 40, cfg, seed=3)
    parts = [swing_part(train, 40, cfg, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    assert all((p["item_idx"].to_numpy() % world_size == r).all() for r, p in enumerate(parts))
    assert merge_swing_parts(parts).equals(one)
    assert not swing_topk(train, 40, cfg, seed=4).equals(one)  # the seed still matters
    with pytest.raises(QarmError, match="rank 2 outside"):
        swing_part(train, 40, cfg, rank=2, world_size=2)


def test_mine_pairs_is_deterministic() -> None:
    train = synthetic_positives(n_users=20, per_user=6)
    cfg = U2IConfig(dim=8, epochs=2, batch_size=32)
    first = mine_pairs(train, 40, PairsConfig(u2i=cfg), seed=1).pairs
    again = mine_pairs(train, 40, PairsConfig(u2i=cfg), seed=1).pairs
    assert first.equals(again)


def _cap_reference(pairs: pl.DataFrame, m: int) -> set[tuple[int, int]]:
    """Per item, its m pairs of highest weight (ties to the lower other item), by a plain loop; kept when either
    item keeps it."""
    rows = pairs.select("trigger_idx", "target_idx", "weight").rows()
    keep: set[tuple[int, int]] = set()
    for item in {x for a, b, _ in rows for x in (a, b)}:
        mine = [(-w, b if a == item else a, (a, b)) for a, b, w in rows if item in (a, b)]
        keep |= {p for _, _, p in sorted(mine)[:m]}
    return keep


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(1, 4)), max_size=60),
       st.integers(1, 4))
def test_u2i_cap_per_item_equals_reference(rows: list[tuple[int, int, int]], m: int) -> None:
    from qarm.pairs.mining import canonical_pairs, cap_per_item

    a, b, w = (np.array(x) for x in zip(*rows)) if rows else (np.zeros(0, int),) * 3
    pairs = canonical_pairs(a, b, w.astype(float), "u2i", "max").sort("trigger_idx", "target_idx")
    got = cap_per_item(pairs, m)
    assert set(got.select("trigger_idx", "target_idx").rows()) == _cap_reference(pairs, m)
    assert got.equals(pairs.filter(pl.struct("trigger_idx", "target_idx").is_in(got.select(
        pl.struct("trigger_idx", "target_idx")).to_series().implode())))  # order kept
    assert cap_per_item(pairs, 0).equals(pairs)


def test_mine_pairs_caps_u2i_pairs_per_item() -> None:
    train = synthetic_positives()
    free = mine_pairs(train, 50, PairsConfig(sources=("u2i",), u2i=U2IConfig(dim=16, epochs=1, batch_size=64)))
    capped = mine_pairs(train, 50, PairsConfig(sources=("u2i",), u2i=U2IConfig(dim=16, epochs=1, batch_size=64,
                                                                               max_pairs_per_item=2)))
    ends = pl.concat([capped.pairs["trigger_idx"], capped.pairs["target_idx"]])
    assert 0 < len(capped.pairs) < len(free.pairs) and ends.value_counts()["count"].max() <= 2 * 2 * 2
    assert capped.stats.u2i_pairs_over_cap == len(free.pairs) - len(capped.pairs)
    assert free.stats.u2i_pairs_over_cap == 0


def test_sparse_adam_first_step_equals_adam_and_leaves_untouched_rows() -> None:
    pos = sorted_positives(synthetic_positives())
    hist = positive_histories(pos, 50)
    has = (hist >= 0).any(axis=1)
    h, t = hist[has], pos["item_idx"].to_numpy()[has]
    one = dict(dim=8, epochs=1, batch_size=len(t))  # a single step: Adam moves only rows with a gradient too
    dense, _ = train_two_tower(h, t, 50, U2IConfig(**one))
    sparse, _ = train_two_tower(h, t, 50, U2IConfig(**one, optimizer="sparse_adam"))
    np.testing.assert_allclose(sparse, dense, atol=2e-5)  # float sums in another order; a wrong step is ~lr = 5e-3
    init, _ = train_two_tower(h, t, 50, U2IConfig(dim=8, epochs=0))
    untouched = np.setdiff1d(np.arange(50), t)  # items 40..49 are never a target
    many, _ = train_two_tower(h, t, 50, U2IConfig(dim=8, epochs=3, batch_size=64, optimizer="sparse_adam"))
    np.testing.assert_array_equal(many[untouched], init[untouched])
    moved, _ = train_two_tower(h, t, 50, U2IConfig(dim=8, epochs=3, batch_size=64))
    assert not np.allclose(moved[t], init[t]) and not np.allclose(many[t], init[t])


@pytest.mark.parametrize("maximize", [False, True])
def test_row_sparse_adam_equals_torch_sparse_adam_bit_for_bit(maximize: bool) -> None:
    """RowSparseAdam (what sparse_adam trains with) against torch.optim.SparseAdam over steps of uncoalesced
    gradients (repeated rows, rows out of order), an empty one and a step with no gradient: parameters and both
    moments identical, float for float."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(40, 6, generator=gen)
    params = [torch.nn.Parameter(init.clone()) for _ in range(2)]
    ours = RowSparseAdam([params[0]], lr=0.05, betas=(0.8, 0.95), eps=1e-6, maximize=maximize)
    ref = torch.optim.SparseAdam([params[1]], lr=0.05, betas=(0.8, 0.95), eps=1e-6, maximize=maximize)
    for step in range(8):
        n = 0 if step == 3 else int(torch.randint(1, 30, (1,), generator=gen))
        rows = torch.randint(0, 25, (1, n), generator=gen)  # rows 25..39 never move
        values = torch.randn(n, 6, generator=gen)
        for p in params:
            p.grad = None if step == 5 else torch.sparse_coo_tensor(rows, values, p.shape, check_invariants=True)
        ours.step()
        ref.step()
        assert torch.equal(params[0], params[1]), f"step {step}"
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(ours.state[params[0]][key], ref.state[params[1]][key]), (step, key)
        assert ours.state[params[0]]["step"] == ref.state[params[1]]["step"]
    assert torch.equal(params[0][25:], init[25:]) and not torch.equal(params[0][:25], init[:25])
    params[0].grad = torch.zeros(40, 6)
    with pytest.raises(QarmError, match="sparse gradients"):
        ours.step()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 14)), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.5]), st.sampled_from([0.5, 1.0]), st.integers(2, 12))
def test_swing_scores_for_item_equal_the_dense_products(rows: list[tuple[int, int]], power: float, alpha: float,
                                                        cap: int) -> None:
    """The pair-enumerating fast path against the dense 0/1 products, item by item, with the user sample."""
    from qarm.pairs.swing import _user_item_matrix, item_rng, swing_scores_for_item

    u, i = (np.array(x, dtype=np.int64) for x in zip(*rows))
    r = _user_item_matrix(u, i, 10, 15)
    r_t = r.T.tocsr()
    cfg = SwingConfig(alpha=alpha, user_weight_power=power, max_users_per_item=cap)
    uw = np.power(np.maximum(np.asarray(r.sum(axis=1)).ravel(), 1.0), -power)
    for item in range(15):
        users = r_t.indices[r_t.indptr[item] : r_t.indptr[item + 1]]
        if len(users) > cap:
            users = np.sort(item_rng(3, item).choice(users, size=cap, replace=False))
        dense = r[users].toarray().astype(np.float64)
        w = np.triu(1.0 / (alpha + dense @ dense.T), k=1) * np.outer(uw[users], uw[users])
        want_scores, support = ((w @ dense) * dense).sum(axis=0), dense.sum(axis=0)
        want = np.flatnonzero((support >= 2) & (np.arange(15) != item))
        cols, scores, counts = swing_scores_for_item(r, r_t, item, cfg, uw, seed=3)
        np.testing.assert_array_equal(cols, want)
        np.testing.assert_allclose(scores, want_scores[want], rtol=1e-12)
        np.testing.assert_array_equal(counts, support[want])
