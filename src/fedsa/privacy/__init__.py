"""Client-level differential privacy of what leaves a client: DP-FedAvg and its accountant."""
