"""fedsa: federated LoRA fine-tuning with selective aggregation."""

__version__ = "0.1.0"
