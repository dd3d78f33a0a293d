"""Base-model loaders: classifiers (BERT-style) and causal LMs, from the hub or local files."""
