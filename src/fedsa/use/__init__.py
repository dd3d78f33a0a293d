"""Using what a run trained: open a run directory, export PEFT adapters, predict."""
