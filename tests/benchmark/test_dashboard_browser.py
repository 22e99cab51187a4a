"""A person's view of the dashboards, in headless Chromium (Debian's `chromium` + `chromium-driver`).

One tiny synthetic suite run builds a store (after an older invocation of the same suite); `qarm-bench ui` serves
it and prints its URLs only once the server answers, its access log going to runs/mlflow-ui.log; the printed
runs-view URL must show the newest invocation's parent run and children (not the older one) with a metric column
holding the children's values; the grouped view shows one row per model x variant holding the mean over seeds;
the printed parent-run URL opens in model-training mode with the description (headline first); report.html renders
every embedded image, in MLflow's artifact viewer and opened from disk.
Screenshots are kept in $QARM_TEST_OUTPUT or test-output/ at the repository root (git-ignored).
Without a browser the test skips, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver; selenium-manager never downloads anything
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000")
SUITE = "synthetic-tiny"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip extra `dev`)")
    if missing:
        msg = f"headless browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if _in_ci():
            pytest.fail(f"CI=true: {msg}; .ci/run installs them", pytrace=False)
        pytest.skip(msg)


def _output_dir() -> Path:
    out = Path(os.environ.get("QARM_TEST_OUTPUT") or ROOT / "test-output") / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _ui_server(runs_dir: Path, port: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m benchmark ui SUITE` in a process group of its own; its output lines are collected."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "ui", SUITE, "--port", str(port), "--runs-dir",
                             str(runs_dir)], cwd=runs_dir.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # main_ui stops mlflow's own process group on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(what: str, check: Any, timeout: float, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _column_texts(driver: Any, col_id: str) -> list[str]:
    cells = driver.find_elements("css selector", f'[role="gridcell"][col-id="{col_id}"]')
    return [c.get_attribute("textContent").strip() for c in cells]


def _full_page_screenshot(driver: Any, path: Path, width: int = 1400) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 40, 12000))
    driver.save_screenshot(str(path))


@pytest.mark.slow
def test_runs_table_description_and_report_html_in_chromium(tmp_path: Path) -> None:
    _require_browser()
    from mlflow.tracking import MlflowClient

    from benchmark.config.suite import load_config
    from benchmark.engine.suite import SuiteRun

    out = _output_dir()
    t0 = time.monotonic()
    phases: list[str] = []

    def phase(name: str) -> None:  # where the time goes, kept beside the screenshots
        phases.append(f"{time.monotonic() - t0:6.1f}s  {name}")
        (out / "timings.txt").write_text("\n".join(phases) + "\n")

    runs_dir = tmp_path / "runs"
    uri = f"sqlite:///{runs_dir / 'mlflow.db'}"
    cfg = load_config(SUITE, [f"suite.runs_dir={runs_dir}", f"suite.tracking_uri={uri}", "suite.models=dlrm",
                              "suite.seeds=0,1", "suite.description=Browser check of the tiny synthetic suite"])
    from benchmark.tracking.store import Tracker

    older = Tracker.for_suite(SUITE, uri, runs_dir)  # an older invocation: the views must not show it
    with older.parent_run("older invocation"), older.child_run("older child", tags={"model": "dlrm"}):
        pass
    SuiteRun(cfg, progress=False).run()
    phase("suite run")

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(SUITE)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.run_name != "older invocation"]
    assert not [t for r in runs for t in r.data.tags if t.startswith("stage.")]  # stage keys: one artifact
    assert parent.data.tags["stage_keys_hash"] and "stage_keys.json" in [
        f.path for f in client.list_artifacts(parent.info.run_id)]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 * len(cfg.suite.variants)
    # the README's metric-name contract, on every child run
    contract = {f"test_{s}_{m}" for s in ("all", "cold", "warm") for m in ("auc", "gauc", "logloss")}
    assert all(contract <= set(c.data.metrics) for c in children)

    port = _free_port()
    with _ui_server(runs_dir, port) as (proc, lines):
        url_line = _wait_for("the runs-view URL line", lambda: next(
            (ln for ln in list(lines) if f"runs of {SUITE}:" in ln), None), timeout=90)
        assert _healthy(port), "the URLs were printed before the server answered"
        url = url_line.split(f"runs of {SUITE}:", 1)[1].strip()
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs?")
        grouped_url = _wait_for("the grouped view's URL", lambda: next((ln.split(":", 1)[1].strip() for ln in
                                list(lines) if ln.startswith(f"  means over seeds of {SUITE}:")), None), timeout=10)
        parent_url = _wait_for("the parent run's URL", lambda: next((ln.split(":", 1)[1].strip() for ln in
                               list(lines) if ln.startswith(f"  newest parent run of {SUITE}:")), None), timeout=10)
        assert parent.info.run_id in parent_url and "workflowType=machine_learning" in parent_url
        assert proc.poll() is None, f"qarm-bench ui exited early: {''.join(lines)}"
        phase("ui answers /health")

        with _chromium(tmp_path / "chrome-profile") as driver:
            driver.get(url)
            name_col, auc_col = "attributes.`Run Name`", "metrics.`test_all_auc`"
            js_widths = "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
            names = _wait_for("the runs table", lambda: (lambda t: t if len(t) > len(children) else None)(
                _column_texts(driver, name_col)), timeout=60)
            time.sleep(0.5)  # let the grid settle before the picture
            driver.save_screenshot(str(out / "mlflow_runs_view.png"))
            phase("runs view rendered")
            for run in [parent, *children]:
                assert any(run.info.run_name in n for n in names), f"{run.info.run_name!r} not in the table: {names}"
            assert not any("older" in n for n in names), f"the older invocation is shown: {names}"
            header = driver.find_elements("css selector", f'[role="columnheader"][col-id="{auc_col}"]')
            assert header and "test_all_auc" in header[0].get_attribute("textContent")
            shown = sorted(float(t) for t in _column_texts(driver, auc_col) if re.fullmatch(r"[-+]?\d+\.?\d*(e[-+]?\d+)?", t))
            assert shown == pytest.approx(sorted(c.data.metrics["test_all_auc"] for c in children))

            # the grouped view: one row per model x variant, holding the mean over the seeds
            driver.get(grouped_url)
            means = {}
            for c in children:
                means.setdefault((c.data.tags["model"], c.data.tags["variant"]), []).append(c.data.metrics["test_all_auc"])
            want = sorted(sum(v) / len(v) for v in means.values())
            grouped = _wait_for("the grouped rows", lambda: (lambda t: t if len(t) >= len(want) else None)(
                [float(m.group()) for m in map(lambda t: re.search(r"\d+\.\d+", t), _column_texts(driver, auc_col))
                 if m]), timeout=60)
            time.sleep(0.5)
            driver.save_screenshot(str(out / "mlflow_grouped_view.png"))
            phase("grouped view rendered")
            for mean in want:
                assert any(g == pytest.approx(mean, abs=1e-3) for g in grouped), (mean, grouped)

            driver.get(parent_url)
            try:
                body = _wait_for("the parent run's description", lambda: (lambda t: t if "Primary hypothesis" in t
                                                                           else None)(
                    driver.find_element("tag name", "body").text), timeout=60)
            except AssertionError:
                driver.save_screenshot(str(out / "mlflow_parent_run_timeout.png"))
                raise
            headline = driver.find_element("xpath", "//*[contains(text(), 'Primary hypothesis')]")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", headline)
            time.sleep(0.3)
            driver.save_screenshot(str(out / "mlflow_parent_run.png"))
            phase("parent run page rendered")
            assert "aligned_codes" in body and "smoke test, not evidence" in body
            # the declared primary family comes first (after the synthetic data's smoke-test line), then the
            # exploratory headline, then the suite's own description
            assert body.index("smoke test, not evidence") < body.index("Primary hypothesis") < body.index("aligned_codes")
            note = parent.data.tags["mlflow.note.content"]
            assert note.startswith("**Synthetic data: smoke test, not evidence.**")
            assert note.index("**Primary hypothesis**") < note.index("**Headline") < note.index("Browser check")
            assert "Browser check of the tiny synthetic suite" in parent.data.tags["mlflow.note.content"]

            # report.html in MLflow's artifact viewer (an iframe)
            driver.get(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}"
                       "/artifacts/report.html?workflowType=machine_learning")
            frame = _wait_for("the artifact viewer's frame", lambda: driver.find_elements("tag name", "iframe"),
                              timeout=60)[0]
            driver.switch_to.frame(frame)
            in_viewer = _wait_for("report.html's images in the artifact viewer", lambda: (lambda w: w if w and all(w)
                                  else None)(driver.execute_script(js_widths)), timeout=30)
            driver.switch_to.default_content()
            driver.save_screenshot(str(out / "mlflow_artifact_report_html.png"))
            phase("report.html in the artifact viewer")

            html = runs_dir / SUITE / "latest" / "report.html"
            driver.set_window_size(1400, 1000)
            driver.get(html.resolve().as_uri())
            _wait_for("report.html to load", lambda: driver.execute_script("return document.readyState") == "complete",
                      timeout=30)
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, "
                "i.src.startsWith('data:image/png;base64,')])")
            _full_page_screenshot(driver, out / "report_html.png")
            phase("report.html from disk")
    manifest_plots = [p for p in (runs_dir / SUITE / "latest" / "plots").glob("*.png")]
    assert len(images) == len(in_viewer) == len(manifest_plots) >= 5
    for alt, complete, width, embedded in images:
        assert complete and width > 0, f"image {alt!r} did not render"
        assert embedded, f"image {alt!r} is not embedded as a data: URI"
    assert not _healthy(port)  # the ui server is gone with its process group
    log = (runs_dir / "mlflow-ui.log").read_text(errors="replace")
    assert "GET" in log or "Uvicorn" in log or "uvicorn" in log, log[-2000:]
    assert not any("GET /" in ln for ln in lines), "the access log went to the console"
    phase("ui stopped")
