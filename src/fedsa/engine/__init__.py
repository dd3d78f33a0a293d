"""The in-process engine: preparation, the round loop, client and server steps, checkpoints."""
