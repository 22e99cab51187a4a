"""At launch (issue 24): every rank sees rank 0's runs/<suite>/ (a token file rank 0 writes, read by the others
through their filesystem), else every rank stops naming the path; a failing rank's report travels through the
launcher's store (qarm/error/R for rank R, with its node's hostname), so the launcher names it wherever it ran.
Two local gloo ranks stand in for two nodes (one given another runs folder)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.core.world import World
from benchmark.dist import launch as distributed

THIS = str(Path(__file__).resolve())


def shared_worker(world: World, dirs: list[str], out: str) -> None:
    """Rank r checks dirs[r] (a rank 'on another node' gets another folder); writes what it saw."""
    try:
        distributed.check_shared_runs(world, Path(dirs[world.rank]))
        said = "ok"
    except distributed.DistributedError as e:
        said = str(e)
    Path(out, f"rank{world.rank}.txt").write_text(said)


def failing_worker(world: World, out: str) -> None:
    """A worker as worker_main runs one: the rank QARM_DIST_FAIL_RANK names fails at its first cell and reports
    to the store ERROR_STORE_ENV names; the other rank finishes."""
    world.where = "cell dlrm/id_only/seed0"
    try:
        distributed.check_fault_injection(world, world.where)
    except RuntimeError as e:
        distributed.record_failure(world, e)
    Path(out, f"rank{world.rank}.done").write_text("")


@pytest.mark.slow
def test_every_rank_seeing_the_runs_folder_passes(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "suite"
    distributed.spawn(distributed.call_file, 2, THIS, "shared_worker", [str(runs)] * 2, str(tmp_path))
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["ok", "ok"]
    assert not list(runs.glob(f"{distributed.SHARED_CHECK}*"))  # the token file is removed


@pytest.mark.slow
def test_a_rank_with_another_runs_folder_stops_every_rank(tmp_path: Path) -> None:
    node0, node1 = tmp_path / "node0" / "runs" / "suite", tmp_path / "node1" / "runs" / "suite"
    distributed.spawn(distributed.call_file, 2, THIS, "shared_worker", [str(node0), str(node1)], str(tmp_path))
    said = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert said[0] == said[1]  # both ranks stop, with the same message
    msg = said[0]
    assert msg.startswith(str(node0 / distributed.SHARED_CHECK)) and f"rank 0 on {socket.gethostname()} wrote" in msg
    assert f"rank 1 on {socket.gethostname()} (looked at {node1 / distributed.SHARED_CHECK}" in msg
    assert "runs/ must be on a shared filesystem for every node" in msg


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tcp", "file"])
def test_a_failing_rank_reaches_the_launcher_through_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               kind: str) -> None:
    args = SimpleNamespace(nproc_per_node=2, nnodes=1, node_rank=0, master_addr="127.0.0.1", master_port=None)
    with distributed.launcher_store(args) as (tcp_store, tcp_spec):
        spec = tcp_spec if kind == "tcp" else f"file://{tmp_path / 'store'}"
        monkeypatch.setenv(distributed.ERROR_STORE_ENV, spec)
        monkeypatch.setenv(distributed.FAIL_RANK_ENV, "1")
        distributed.spawn(distributed.call_file, 2, THIS, "failing_worker", str(tmp_path))
        store = tcp_store if kind == "tcp" else distributed.error_store(spec)
        failures = distributed.read_failures(store, 2)
    assert (tmp_path / "rank0.done").exists() and (tmp_path / "rank1.done").exists()
    assert [f["rank"] for f in failures] == [1]
    line = distributed.failure_line(failures)
    assert line.startswith(f"the distributed run failed: rank 1 on node {socket.gethostname()} (cell "
                           "dlrm/id_only/seed0): RuntimeError: injected failure (QARM_DIST_FAIL_RANK=1)")
    assert json.loads(store.get(f"{distributed.ERROR_KEY}/1"))["host"] == socket.gethostname()


def test_several_nodes_share_node_0s_store() -> None:
    """With --nnodes > 1 every node's ranks report to node 0's store, on --master-port + 1."""
    args = SimpleNamespace(nproc_per_node=2, nnodes=2, node_rank=1, master_addr="10.0.0.7", master_port=29600)
    with distributed.launcher_store(args) as (store, spec):
        assert store is None and spec == "tcp://10.0.0.7:29601"  # node 1 serves nothing, connects to node 0
