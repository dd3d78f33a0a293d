"""Run configuration: the schema (dataclasses), its loader (TOML, overrides) and validation."""
