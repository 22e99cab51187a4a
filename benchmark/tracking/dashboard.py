"""MLflow dashboards (issue 14): the experiment kind, the saved QARM-Bench runs view and run descriptions,
written through an MlflowClient that benchmark.tracking.store hands in (this module imports no mlflow).
"""

from __future__ import annotations

import json
import time
from typing import Any

# What MLflow 3.17.2's UI reads (from its bundle, mlflow/server/js/build/static/js):
# - The experiment tag `mlflow.experimentKind` (values genai_development, custom_model_development, ...) is what
#   the UI's experiment-kind selector writes. With the GenAI / Model-training toggle of 3.17 (enabled in this
#   build) the page's mode comes from the `workflowType` URL parameter (genai | machine_learning), else from the
#   browser's localStorage, default genai: the tag alone does not switch a fresh browser to the training-runs
#   table, so every URL printed here carries `workflowType=machine_learning` too.
# - Routes are hash routes: `#/experiments/<id>/runs` is the runs table. `orderByKey` (`metrics.`<name>``) and
#   `orderByAsc` sort it, but a metric column shows only when it is among the view's selected columns.
# - A saved view is the experiment tag `mlflow.sharedViewState.<id>` holding {"name", "createdAt", "updatedAt",
#   "state"} (state: JSON of search facets and UI state such as `selectedColumns`); `?viewStateShareKey=<id>`
#   opens it, and it is listed under the page's "Views" menu. The QARM-Bench view below shows the contract
#   metrics (README "Metric names (a contract)") as columns, sorted by test AUC.

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
WORKFLOW_TYPE = "machine_learning"
DESCRIPTION_TAG = "mlflow.note.content"
DESCRIPTION_MAX = 8000  # MLflow's limit on a run tag's value
RUNS_VIEW_ID = "qarm-bench-runs"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_ID}"
RUNS_VIEW_NAME = "QARM-Bench: test metrics"
RUNS_VIEW_METRICS = ("test_all_auc", "test_all_gauc", "test_all_logloss", "test_cold_auc", "test_warm_auc")
RUNS_VIEW_TAGS = ("model", "variant", "seed")
RUNS_VIEW_SORT = "test_all_auc"


def runs_view_state() -> dict[str, Any]:
    """The saved view's state: default search facets, sorted by test AUC, the contract metrics as columns."""
    return {
        "searchFilter": "", "orderByKey": f"metrics.`{RUNS_VIEW_SORT}`", "orderByAsc": False, "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "selectedColumns": [f"metrics.`{m}`" for m in RUNS_VIEW_METRICS] + [f"tags.`{t}`" for t in RUNS_VIEW_TAGS],
    }


def dress_experiment(client: Any, experiment_id: str) -> None:
    """Tag an experiment as model development and (re)write the QARM-Bench saved runs view; idempotent.

    The view is owned by QARM-Bench (rewritten when its state differs); a user's own views keep other names.
    """
    tags = client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    state = json.dumps(runs_view_state(), sort_keys=True)
    try:
        old = json.loads(tags.get(RUNS_VIEW_TAG, ""))
        created = int(old["createdAt"])
        current = old.get("state") == state and old.get("name") == RUNS_VIEW_NAME
    except (ValueError, TypeError, KeyError):
        created, current = int(time.time() * 1000), False
    if not current:
        envelope = {"name": RUNS_VIEW_NAME, "createdAt": created, "updatedAt": int(time.time() * 1000),
                    "state": state}
        client.set_experiment_tag(experiment_id, RUNS_VIEW_TAG, json.dumps(envelope))


def runs_view_url(base_url: str, experiment_id: str) -> str:
    """Direct URL of the experiment's training-runs table with the QARM-Bench view (metric columns, AUC order)."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType={WORKFLOW_TYPE}"
            f"&viewStateShareKey={RUNS_VIEW_ID}")


def set_run_description(client: Any, run_id: str, text: str) -> None:
    if len(text) > DESCRIPTION_MAX:
        text = text[:DESCRIPTION_MAX - 1] + "…"
    client.set_tag(run_id, DESCRIPTION_TAG, text)
