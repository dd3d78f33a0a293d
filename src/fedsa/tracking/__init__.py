"""Experiment trackers (TensorBoard, MLflow, W&B, trackio): mirrors of a run's metrics.

``metrics.jsonl`` stays the source of truth; ``[tracking] report_to`` copies each round's record,
the resolved config and the run's plots to the trackers a team already uses. Each backend is an
optional extra imported only when named, so fedsa imports and runs without any of them.
"""
