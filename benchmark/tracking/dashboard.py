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

# - Grouping (the runs table's "Group by" menu) is the UI state `groupBy`: {"aggregateFunction": "average" | "min" |
#   "max", "groupByKeys": [{"mode": "tag" | "param" | "dataset", "groupByData": <name>}, ...]}; it is among the
#   state a saved view carries. A group row shows the aggregate of its runs' metrics.
# - The page's GenAI / model-training mode is NOT decided by any tag: it is the `workflowType` URL parameter, else
#   the browser's localStorage `mlflow.workflowType` (default genai). Every URL printed here, the parent run's
#   included, carries `workflowType=machine_learning`.

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
WORKFLOW_TYPE = "machine_learning"
DESCRIPTION_TAG = "mlflow.note.content"
DESCRIPTION_MAX = 8000  # MLflow's limit on a run tag's value
INVOCATION_TAG = "invocation"  # on a parent run and its children: the parent's run id (one `qarm-bench run`)
LATEST_INVOCATION_TAG = "qarm.latest_invocation"  # experiment tag: the newest parent run id; the views filter on it
RUNS_VIEW_ID = "qarm-bench-runs"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_ID}"
RUNS_VIEW_NAME = "QARM-Bench: test metrics"
GROUPED_VIEW_ID = "qarm-bench-by-model-variant"
GROUPED_VIEW_TAG = f"mlflow.sharedViewState.{GROUPED_VIEW_ID}"
GROUPED_VIEW_NAME = "QARM-Bench: means over seeds by model x variant"
GROUP_BY_TAGS = ("model", "variant")
RUNS_VIEW_METRICS = ("test_all_auc", "test_all_gauc", "test_all_logloss", "test_cold_auc", "test_warm_auc")
RUNS_VIEW_TAGS = ("model", "variant", "seed")
RUNS_VIEW_SORT = "test_all_auc"


def invocation_filter(invocation: str) -> str:
    """The runs-table search that keeps one invocation's runs (its parent and children); "" = every run."""
    return f"tags.{INVOCATION_TAG} = '{invocation}'" if invocation else ""


def runs_view_state(invocation: str = "") -> dict[str, Any]:
    """The saved view's state: the latest invocation's runs, sorted by test AUC, the contract metrics as columns."""
    return {
        "searchFilter": invocation_filter(invocation), "orderByKey": f"metrics.`{RUNS_VIEW_SORT}`",
        "orderByAsc": False, "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [f"metrics.`{m}`" for m in RUNS_VIEW_METRICS] + [f"tags.`{t}`" for t in RUNS_VIEW_TAGS],
    }


def grouped_view_state(invocation: str = "") -> dict[str, Any]:
    """The second saved view: the same runs grouped by model and variant, each group row the mean over seeds."""
    return {**runs_view_state(invocation),
            "groupBy": {"aggregateFunction": "average",
                        "groupByKeys": [{"mode": "tag", "groupByData": t} for t in GROUP_BY_TAGS]},
            "groupsExpanded": {}, "useGroupedValuesInCharts": True}


def _write_view(client: Any, experiment_id: str, tags: dict[str, str], tag: str, name: str,
                state_obj: dict[str, Any]) -> None:
    """(Re)write one saved view when its name or state differs; keeps its createdAt."""
    state = json.dumps(state_obj, sort_keys=True)
    try:
        old = json.loads(tags.get(tag, ""))
        created = int(old["createdAt"])
        current = old.get("state") == state and old.get("name") == name
    except (ValueError, TypeError, KeyError):
        created, current = int(time.time() * 1000), False
    if not current:
        envelope = {"name": name, "createdAt": created, "updatedAt": int(time.time() * 1000), "state": state}
        client.set_experiment_tag(experiment_id, tag, json.dumps(envelope))


def dress_experiment(client: Any, experiment_id: str, latest_invocation: str | None = None) -> None:
    """Tag an experiment as model development and (re)write the two QARM-Bench saved views; idempotent.

    latest_invocation: a new parent run id (recorded as the experiment tag LATEST_INVOCATION_TAG); None keeps the
    recorded one. The views are owned by QARM-Bench (rewritten when their state differs); a user's own views keep
    other names.
    """
    tags = client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if latest_invocation is not None and tags.get(LATEST_INVOCATION_TAG) != latest_invocation:
        client.set_experiment_tag(experiment_id, LATEST_INVOCATION_TAG, latest_invocation)
    invocation = latest_invocation if latest_invocation is not None else tags.get(LATEST_INVOCATION_TAG, "")
    _write_view(client, experiment_id, tags, RUNS_VIEW_TAG, RUNS_VIEW_NAME, runs_view_state(invocation))
    _write_view(client, experiment_id, tags, GROUPED_VIEW_TAG, GROUPED_VIEW_NAME, grouped_view_state(invocation))


def latest_invocation(client: Any, experiment_id: str) -> str:
    """The newest parent run id recorded on the experiment ("" before any run)."""
    return client.get_experiment(experiment_id).tags.get(LATEST_INVOCATION_TAG, "")


def runs_view_url(base_url: str, experiment_id: str, view_id: str = RUNS_VIEW_ID) -> str:
    """Direct URL of the experiment's training-runs table with a QARM-Bench view (default: the metric columns)."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType={WORKFLOW_TYPE}"
            f"&viewStateShareKey={view_id}")


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """Direct URL of one run's page, in model-training mode (its description, the headline, comes first)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType={WORKFLOW_TYPE}"


def set_run_description(client: Any, run_id: str, text: str) -> None:
    if len(text) > DESCRIPTION_MAX:
        text = text[:DESCRIPTION_MAX - 1] + "…"
    client.set_tag(run_id, DESCRIPTION_TAG, text)
