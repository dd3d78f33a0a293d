"""Tasks behind one interface: loading, encoding and scoring (classification, generation)."""
