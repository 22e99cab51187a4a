"""Train RecBole 1.2.1's DeepFM and DIN on our exported split (issue 11 point 3, docs/peer-parity.md).

Run with .peer-venv's python (scripts/peer_recbole.sh builds it and calls this). It imports only
RecBole and its stack, never our packages (that environment has no torchrec, polars or mlflow).

    .peer-venv/bin/python scripts/peer_recbole.py --data runs/peer/data --dataset movielens-100k \\
        --out runs/peer/peer_recbole.json [--models DeepFM,DIN] [--seeds 0,1,2] [--check-history]

Input: the folder written by `qarm-bench data export NAME --format recbole --history-len 50`
(<data>/<dataset>/<dataset>.{train,valid,test}.inter, .item, .user). Output: one JSON with, per
(model, seed), test AUC / LogLoss at the best validation epoch, best valid AUC and its epoch, the
validation curve and wall time; mean / std over seeds per model; the exact RecBole settings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

MODELS = ("DeepFM", "DIN")
USER_FEATURES = ["user_id", "age", "gender", "occupation"]
ITEM_FEATURES = ["item_id", "release_year", "genre"]


def settings(model: str, args: argparse.Namespace, seed: int, workdir: Path) -> dict:
    """The RecBole config_dict of one run. Everything not named here is RecBole's default
    (recbole/properties/overall.yaml and properties/model/<model>.yaml)."""
    inter = ["user_id", "item_id", "label"] + (["item_id_list"] if model == "DIN" else [])
    cfg = {
        "data_path": str(Path(args.data).resolve()),
        "benchmark_filename": ["train", "valid", "test"],  # our exact rows: no filtering, no re-splitting
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LABEL_FIELD": "label",
        "TIME_FIELD": "timestamp", "RATING_FIELD": "rating",
        "threshold": None,  # the label is given (rating >= 4), not derived by RecBole
        # features: user id, age, gender, occupation; item id, release year, genres (all categorical);
        # timestamp, rating and the item text are in the files but never loaded.
        "load_col": {"inter": inter, "user": USER_FEATURES, "item": ITEM_FEATURES},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "none", "order": "TO", "mode": "labeled"},
        "train_neg_sample_args": None,  # labeled CTR data: no sampled negatives
        "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC", "valid_metric_bigger": True, "eval_step": 1,
        "metric_decimal_place": 6,
        "epochs": args.epochs, "stopping_step": args.stopping_step,
        "embedding_size": args.embedding_size,
        "seed": seed, "reproducibility": True,
        "device": "cpu", "use_gpu": False, "worker": 0,
        "checkpoint_dir": str(workdir / "saved"), "show_progress": False, "state": "INFO",
    }
    if model == "DIN":
        cfg |= {
            # RecBole's DIN uses mlp_hidden_size for both its attention MLP and its output MLP; its
            # default [256, 256, 256] costs ~3x the time per batch here (docs/peer-parity.md).
            "mlp_hidden_size": args.din_mlp,
            # item_id_list holds raw item ids: remap it with item_id (one index space for the history).
            "alias_of_item_id": ["item_id_list"],
            "MAX_ITEM_LIST_LENGTH": args.history_len,
        }
    return cfg


def run_one(model_name: str, args: argparse.Namespace, seed: int, workdir: Path) -> dict:
    """Train one (model, seed); early stopping on valid AUC, test at the best valid epoch."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # RecBole writes log/ and log_tensorboard/ under the working directory
    cfg = settings(model_name, args, seed, workdir)
    config = Config(model=model_name, dataset=args.dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])  # as run_recbole does
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    curve: list[float] = []
    valid_epoch = trainer._valid_epoch

    def recorded(*a, **kw):  # keep the validation curve (RecBole only logs it)
        score, result = valid_epoch(*a, **kw)
        curve.append(round(float(score), 6))
        return score, result

    trainer._valid_epoch = recorded
    best_valid, _ = trainer.fit(train, valid, saved=True, show_progress=False)
    best_epoch = int(torch.load(trainer.saved_model_file, map_location="cpu")["epoch"]) + 1  # 1-based
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    wall = time.perf_counter() - t0
    return {
        "model": model_name, "seed": seed,
        "test_auc": float(test_result["auc"]), "test_logloss": float(test_result["logloss"]),
        "best_valid_auc": float(best_valid), "best_epoch": best_epoch, "epochs_run": len(curve),
        "valid_auc_curve": curve, "wall_s": round(wall, 1),
        "rows": {"train": len(train.dataset), "valid": len(valid.dataset), "test": len(test.dataset)},
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        # tokens per loaded feature as RecBole indexed them (incl. its [PAD] = 0): the features reached it
        "vocab": {f: int(dataset.num(f)) for f in ["user_id", *USER_FEATURES[1:], "item_id", *ITEM_FEATURES[1:]]},
        "model_settings": {k: config[k] for k in ("embedding_size", "mlp_hidden_size", "dropout_prob",
                                                  "learning_rate", "train_batch_size", "weight_decay")
                           if k in config},
    }


def check_history(args: argparse.Namespace, workdir: Path) -> dict:
    """Compare the exported item_id_list with the history RecBole itself builds
    (SequentialDataset.data_augmentation) from ONE .inter file holding train, valid and test in that
    order. Augmentation drops each user's first row, which the export keeps with an empty list."""
    import pandas as pd
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.utils import init_logger, init_seed

    src = Path(args.data).resolve() / args.dataset
    one = workdir / "history-check" / args.dataset
    one.mkdir(parents=True, exist_ok=True)
    frames = [pd.read_csv(src / f"{args.dataset}.{s}.inter", sep="\t", dtype=str, keep_default_na=False)
              for s in ("train", "valid", "test")]
    both = pd.concat(frames, ignore_index=True)
    both.drop(columns=["item_id_list:token_seq"]).to_csv(one / f"{args.dataset}.inter", sep="\t", index=False)
    os.chdir(workdir)
    config = Config(model="DIN", dataset=args.dataset, config_dict={
        "data_path": str(one.parent), "load_col": {"inter": ["user_id", "item_id", "timestamp", "label"]},
        "threshold": None, "MAX_ITEM_LIST_LENGTH": args.history_len, "eval_args": {
            "split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "none", "order": "TO", "mode": "labeled"},
        "train_neg_sample_args": None, "device": "cpu", "use_gpu": False, "show_progress": False,
        "state": "WARNING", "checkpoint_dir": str(workdir / "saved")})
    init_seed(0, True)
    init_logger(config)
    ds = create_dataset(config)
    ds._change_feat_format()  # runs data_augmentation, as build() does
    inter = ds.inter_feat
    users = ds.id2token("user_id", inter["user_id"].numpy())
    lens = inter["item_length"].numpy()
    hist = inter["item_id_list"].numpy()
    theirs: dict[str, list[str]] = {}
    for u, row, n in zip(users, hist, lens):
        theirs.setdefault(u, []).append(" ".join(ds.id2token("item_id", row[:n])))
    ours: dict[str, list[str]] = {}
    for u, h in zip(both["user_id:token"], both["item_id_list:token_seq"]):
        ours.setdefault(u, []).append(h)
    # the export's rows per user are in (ts, item) order; RecBole's in its stable (user, time) order
    mismatched = [u for u in ours if ours[u][1:] != theirs.get(u, [])]
    return {"rows_compared": int(sum(len(v) for v in theirs.values())), "users": len(ours),
            "users_mismatched": len(mismatched), "first_mismatched_user": mismatched[0] if mismatched else None,
            "first_rows_dropped_by_recbole": len(ours)}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for m in sorted({r["model"] for r in runs}):
        rs = [r for r in runs if r["model"] == m]
        agg = {}
        for k in ("test_auc", "test_logloss", "best_valid_auc", "best_epoch", "wall_s"):
            v = [float(r[k]) for r in rs]
            agg[k] = {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
        out[m] = {"seeds": [r["seed"] for r in rs], **agg}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder holding <dataset>/ with the exported atomic files")
    p.add_argument("--dataset", default="movielens-100k")
    p.add_argument("--out", required=True, help="JSON file to write (its folder also gets RecBole's logs)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=30, help="epoch cap (early stopping usually ends sooner)")
    p.add_argument("--stopping-step", type=int, default=3,
                   help="stop after this many evaluations without a better valid AUC (RecBole's default is 10)")
    p.add_argument("--din-mlp", default="128,64", type=lambda s: [int(x) for x in s.split(",")],
                   help="DIN mlp_hidden_size (attention and output MLP; RecBole's default 256,256,256)")
    p.add_argument("--embedding-size", type=int, default=16, help="ours (rankers' embedding_dim) is 16")
    p.add_argument("--history-len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH: the export's --history-len")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--check-history", action="store_true",
                   help="also compare the exported item_id_list with RecBole's own data_augmentation")
    args = p.parse_args(argv)
    # RecBole's checkpoint holds its Config object; torch >= 2.6 loads weights only unless told otherwise.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    # RecBole 1.2.1 on pandas 2.3 / torch 2.13: deprecation notices on every run, none of them a fault
    # (chained fillna(inplace=True) still writes through before pandas 3; Series.agg(len) still maps).
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line: give it none
    args.data = str(Path(args.data).resolve())  # run_one changes the working directory
    out = Path(args.out).resolve()
    work = out.parent / (out.stem + "-work")
    src = Path(args.data) / args.dataset
    if not (src / f"{args.dataset}.train.inter").exists():
        print(f"peer_recbole.py: {src}: no {args.dataset}.train.inter; run the export first "
              f"(bash scripts/peer_recbole.sh run --out DIR does)", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        print(f"peer_recbole.py: --models: unknown {bad}; expected some of {list(MODELS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    import recbole
    import torch

    t0 = time.perf_counter()
    result: dict = {
        "peer": f"RecBole {recbole.__version__}", "torch": torch.__version__, "python": platform.python_version(),
        "dataset": args.dataset, "data": str(src.resolve()), "split": "exported: benchmark_filename [train, valid, test]",
        "describe": json.loads((Path(args.data) / "describe.json").read_text())
        if (Path(args.data) / "describe.json").exists() else None,
        "features": {"user": USER_FEATURES, "item": ITEM_FEATURES,
                     "DIN_history": f"item_id_list, <= {args.history_len} earlier rows of any label"},
        "settings": {m: settings(m, args, seeds[0], work) | {"seed": seeds} for m in models},
        "runs": [],
    }
    if args.check_history:
        result["history_check"] = check_history(args, work)
        print(f"history check: {result['history_check']}", flush=True)
    for m in models:
        for s in seeds:
            r = run_one(m, args, s, work / f"{m}-seed{s}")
            result["runs"].append(r)
            print(f"{m} seed {s}: test AUC {r['test_auc']:.4f} LogLoss {r['test_logloss']:.4f} "
                  f"(best valid AUC {r['best_valid_auc']:.4f} at epoch {r['best_epoch']}, "
                  f"{r['epochs_run']} epochs, {r['wall_s']:.0f} s)", flush=True)
            result["summary"] = summarise(result["runs"])
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1))  # after every run: a partial result survives
    for m, agg in result.get("summary", {}).items():
        print(f"{m}: test AUC {agg['test_auc']['mean']:.4f} ± {agg['test_auc']['std']:.4f}, "
              f"LogLoss {agg['test_logloss']['mean']:.4f} ± {agg['test_logloss']['std']:.4f} over seeds {agg['seeds']}")
    print(f"wrote {out} ({result.get('wall_s', 0):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
