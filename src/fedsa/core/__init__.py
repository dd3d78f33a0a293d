"""Core types and pure helpers for every layer: errors, named tensors, slots, devices, files."""
