"""Tables and the plot of `qarm-bench perf scale` (benchmark/perf/scale.py): scale.json -> scale.md, scale.png.

Rows of scale.json are entries (one child process each): interactions, entry ("data", "codes/aligned_rq_kmeans",
"rank/dlrm/id_only", ...), stage (the entry's first part), status, compute_s, load_s, wall_s, cpu_s, peak_rss_gb.
Groups: the code sets sum into one "codes" line (time summed, peak = the largest); every rank cell is its own
line; "item side" sums the item-side entries (data, pairs, frozen, align, codes) of a size (time summed, peak = the
largest), the cost of everything before the rankers. Growth exponent: the least-squares slope of log(time) on
log(interactions) over the sizes that finished (1 = linear), and the slope between each pair of consecutive sizes;
for memory, of the peak above the imports-only baseline of that size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

TARGET_GB = 4.0  # every stage's peak at the 10M point (issue 21)
ITEM_SIDE = ("data", "pairs", "frozen", "align", "codes")


def load_results(path: Path) -> dict[str, Any]:
    """The accumulated results (empty when the file does not exist yet)."""
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": [], "runs": []}


def groups(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """{group: {interactions: {"compute_s", "wall_s", "cpu_s", "peak_rss_gb", "status"}}}, in run order."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        g = "codes" if r["stage"] == "codes" else r["entry"]
        cell = out.setdefault(g, {}).setdefault(r["interactions"], {"compute_s": 0.0, "wall_s": 0.0, "cpu_s": 0.0,
                                                                     "peak_rss_gb": 0.0, "status": "ok", "n": 0})
        for k in ("compute_s", "wall_s", "cpu_s"):
            cell[k] += float(r.get(k) or 0.0)
        cell["peak_rss_gb"] = max(cell["peak_rss_gb"], float(r.get("peak_rss_gb") or 0.0))
        cell["n"] += 1
        if r["status"] != "ok":
            cell["status"] = r["status"]
    return out


def item_side(g: dict[str, dict[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """{interactions: summed cell} over the item-side groups present at that size (status: the first not ok)."""
    out: dict[int, dict[str, Any]] = {}
    for name in ITEM_SIDE:
        for n, c in g.get(name, {}).items():
            cell = out.setdefault(n, {"compute_s": 0.0, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_gb": 0.0,
                                      "status": "ok", "n": 0})
            for k in ("compute_s", "wall_s", "cpu_s"):
                cell[k] += c[k]
            cell["peak_rss_gb"] = max(cell["peak_rss_gb"], c["peak_rss_gb"])
            cell["n"] += c["n"]
            if c["status"] != "ok" and cell["status"] == "ok":
                cell["status"] = c["status"]
    return out


def step_exponents(points: list[tuple[int, float]]) -> list[float]:
    """The slope of log y on log x between each pair of consecutive sizes (points with y > 0, sorted by x)."""
    pts = sorted((x, y) for x, y in points if y > 0)
    return [math.log(y1 / y0) / math.log(x1 / x0) for (x0, y0), (x1, y1) in zip(pts, pts[1:])]


def size_label(n: int) -> str:
    """10000000 -> "10M", 3000000 -> "3M", 1200 -> "1,200"."""
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n:,}"


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log y on log x over points with y > 0 (None with fewer than 2 sizes)."""
    pts = [(x, y) for x, y in points if y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def _fmt(cell: dict[str, Any] | None, key: str, digits: int) -> str:
    if cell is None:
        return "–"
    if cell["status"] != "ok":
        return "timeout" if cell["status"] == "timeout" else cell["status"].split(" ")[0]
    return f"{cell[key]:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The summary table (one line per group) and the per-entry table, as markdown."""
    rows = results["rows"]
    sizes = sorted({r["interactions"] for r in rows})
    g = groups(rows)
    base = g.pop("baseline", {})
    head = " | ".join(f"{size_label(n)} s | {size_label(n)} GB" for n in sizes)
    lines = [f"| stage | {head} | time exponent | between sizes | memory exponent |",
             "|---|" + "---|" * (2 * len(sizes) + 3)]
    side = item_side(g)
    for name, cells in [*g.items(), *([("**item side**", side)] if side else [])]:
        vals = " | ".join(f"{_fmt(cells.get(n), 'compute_s', 1)} | {_fmt(cells.get(n), 'peak_rss_gb', 2)}"
                          for n in sizes)
        ok = [(n, c) for n, c in cells.items() if c["status"] == "ok"]
        t_exp = exponent([(n, c["compute_s"]) for n, c in ok])
        steps = ", ".join(f"{e:.2f}" for e in step_exponents([(n, c["compute_s"]) for n, c in ok])) or "–"
        m_exp = exponent([(n, c["peak_rss_gb"] - base.get(n, {}).get("peak_rss_gb", 0.0)) for n, c in ok])
        lines.append(f"| {name} | {vals} | {_exp(t_exp)} | {steps} | {_exp(m_exp)} |")
    if side:
        vals = " | ".join(f"{_fmt(side.get(n), 'wall_s', 1)} | –" for n in sizes)
        lines.append(f"| item side, child wall s (imports and loading included) | {vals} | | | |")
    if base:
        vals = " | ".join(f"– | {_fmt(base.get(n), 'peak_rss_gb', 2)}" for n in sizes)
        lines.append(f"| imports only (baseline) | {vals} | | | |")
    peak = {n: max((c[n]["peak_rss_gb"] for c in g.values() if n in c), default=0.0) for n in sizes}
    lines.append("| **largest peak** | " + " | ".join(f"– | **{peak[n]:.2f}**" for n in sizes) + " | | | |")
    detail = ["| interactions | entry | status | compute s | load s | child wall s | CPU s | peak GB | load avg | "
              "detail |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        detail.append(f"| {r['interactions']:,} | {r['entry']} | {r['status']} | {_num(r.get('compute_s'))} | "
                      f"{_num(r.get('load_s'))} | {_num(r.get('wall_s'))} | {_num(r.get('cpu_s'))} | "
                      f"{_num(r.get('peak_rss_gb'), 2)} | {_num(r.get('load_avg'), 1)} | {r.get('detail', '')} |")
    return "\n".join(lines) + "\n\nPer entry:\n\n" + "\n".join(detail) + "\n"


def _exp(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _num(v: Any, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}f}"


def plot(results: dict[str, Any], path: Path) -> None:
    """Log-log compute time and peak RSS against interactions, one line per group, with a dashed line
    proportional to N (time: through the first size's total; memory: through the first size's largest peak
    above the baseline, drawn on top of that baseline) and the 8 GB target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = groups(results["rows"])
    base = g.pop("baseline", {})
    sizes = sorted({r["interactions"] for r in results["rows"]})
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    for name, cells in g.items():
        ok = sorted((n, c) for n, c in cells.items() if c["status"] == "ok")
        if ok:
            xs = [n for n, _ in ok]
            style = "--" if name.startswith("rank/") else "-"
            ax_t.plot(xs, [max(c["compute_s"], 1e-2) for _, c in ok], style, marker="o", label=name)
            ax_m.plot(xs, [c["peak_rss_gb"] for _, c in ok], style, marker="o", label=name)
    if sizes:
        n0, x = sizes[0], np.array(sizes, dtype=float)
        t0 = sum(c[n0]["compute_s"] for c in g.values() if n0 in c and c[n0]["status"] == "ok")
        if t0 > 0:
            ax_t.plot(x, t0 * x / n0, ":", color="black", label="∝ N (through the 1st size's total)")
        b0 = base.get(n0, {}).get("peak_rss_gb", 0.0)
        m0 = max((c[n0]["peak_rss_gb"] for c in g.values() if n0 in c), default=0.0) - b0
        if m0 > 0:
            ax_m.plot(x, b0 + m0 * x / n0, ":", color="black", label="baseline + ∝ N")
    ax_m.axhline(TARGET_GB, color="red", linewidth=1, label=f"{TARGET_GB:g} GB target")
    for ax, ylabel in ((ax_t, "compute wall time (s)"), (ax_m, "peak RSS of the entry's process (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7, loc="upper left")
    ax_m.set_title("peak memory per stage")
    ax_t.set_title("compute time per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out_dir: Path) -> None:
    """scale.json, scale.md (tables) and scale.png under out_dir."""
    (out_dir / "scale.json").write_text(json.dumps(results, indent=1, default=float))
    (out_dir / "scale.md").write_text(markdown(results))
    plot(results, out_dir / "scale.png")
