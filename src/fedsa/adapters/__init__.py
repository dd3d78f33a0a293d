"""Adapter variants (LoRA, rsLoRA, VeRA) from PEFT, and the shared/private/frozen layout."""
