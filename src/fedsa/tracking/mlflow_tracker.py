"""MLflow: one MLflow run per fedsa run, through ``MlflowClient`` (no global active run).

The client API keeps fedsa from touching MLflow's process-wide state (the active run, the
tracking URI), so a user's own MLflow code around ``fedsa.run`` is left alone. Without
``tracking.mlflow_uri`` the store is a local SQLite database, ``RUN_DIR/mlflow/mlflow.db``, with
artefacts in ``RUN_DIR/mlflow/artifacts``: MLflow 3 refuses plain ``file:`` stores by default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsa.tracking.base import Target, flatten, require

PACKAGE = "mlflow"
PARAM_LIMIT = 6000
"""Longest param value MLflow stores; longer values (long lists) are cut with a marker."""
BATCH = 100
"""Most params MLflow takes in one ``log_batch`` call."""


def local_uri(run_dir: Path) -> str:
    """The default store of a run: SQLite in ``RUN_DIR/mlflow``."""
    return f"sqlite:///{(run_dir / 'mlflow' / 'mlflow.db').resolve()}"


class MlflowTracker:
    """Params (flattened config), metrics per round, the plots and JSON files as artefacts."""

    def __init__(self, target: Target) -> None:
        """Open (or, on resume, reopen) the run in the experiment ``tracking.project``."""
        require(PACKAGE, "mlflow")
        from mlflow.entities import RunStatus
        from mlflow.tracking import MlflowClient

        settings = target.settings
        self._finished = RunStatus.to_string(RunStatus.FINISHED)
        self._failed = RunStatus.to_string(RunStatus.FAILED)
        uri = settings.mlflow_uri
        artifacts = None
        if not uri:
            (target.run_dir / "mlflow").mkdir(parents=True, exist_ok=True)
            uri = local_uri(target.run_dir)
            artifacts = (target.run_dir / "mlflow" / "artifacts").resolve().as_uri()
        self.run_dir = target.run_dir
        self.client: Any = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(settings.project)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(settings.project, artifact_location=artifacts)
        )
        self.run_id = ""
        if target.previous_id:
            try:
                self.run_id = self.client.get_run(target.previous_id).info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            except Exception:  # gone, or another store: start a new run instead
                self.run_id = ""
        if not self.run_id:
            run = self.client.create_run(
                experiment_id, run_name=target.name, tags=dict(target.tags)
            )
            self.run_id = run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Dotted keys, string values of at most 6000 characters, 100 per request."""
        from mlflow.entities import Param

        flat = flatten(params)
        items = [
            Param(k, v if len(v) <= PARAM_LIMIT else v[: PARAM_LIMIT - 3] + "...")
            for k, v in sorted(flat.items())
        ]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def log_round(self, step: int, scalars: Mapping[str, float]) -> None:
        """All of a round's scalars in one request, at step = round."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in scalars.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's limit per request
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Each file under the same relative folder as in the run directory."""
        for path in paths:
            folder = path.relative_to(self.run_dir).parent.as_posix()
            self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)

    def close(self, *, failed: bool = False) -> None:
        """Mark the run FINISHED (or FAILED)."""
        self.client.set_terminated(self.run_id, status=self._failed if failed else self._finished)
