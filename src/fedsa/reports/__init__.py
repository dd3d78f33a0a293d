"""What a person reads after runs: comparison tables, plots and the A/B asymmetry analysis."""
