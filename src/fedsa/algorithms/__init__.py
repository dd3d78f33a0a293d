"""Federated algorithms: data plus typed hooks (schedule, server rule, install), by family."""
