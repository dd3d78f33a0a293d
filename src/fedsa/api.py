"""The Python API: run an experiment and use its result from a notebook or a script.

::

    import fedsa

    result = fedsa.run("configs/tiny.toml", overrides=["federation.rounds=3"], out="runs/try")
    print(result.summary["final"]["accuracy_mean"])
    model = result.client_model("0")          # a ready PEFT model: client 0's personalised one
    again = fedsa.load_run("runs/try")        # the same, later, from disk

Both return a :class:`Run` (a :class:`~fedsa.use.saved.SavedRun`): ``config`` (the resolved
:class:`~fedsa.config.schema.RunConfig`), ``metrics`` (one dict per round), ``summary``,
``client_ids``, ``client_model(id)``, ``export(...)`` and ``predict(...)``. Mistakes raise
:class:`~fedsa.core.errors.FedsaError` subclasses with the same one-line messages the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsa.config.load import apply_overrides, config_from_dict, load_config
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError
from fedsa.use.saved import SavedRun

ConfigLike = str | Path | RunConfig | Mapping[str, Any]


def resolve_config(config: ConfigLike, overrides: Sequence[str] = ()) -> RunConfig:
    """A TOML path, a nested dict (``config.json`` form) or a RunConfig, with overrides applied."""
    if isinstance(overrides, str):
        raise ConfigError("overrides must be a list of 'key=value' strings, not one string")
    if isinstance(config, (str, Path)):
        return load_config(config, overrides)
    tree: dict[str, Any]
    if isinstance(config, RunConfig):
        tree = config.to_dict()
    elif isinstance(config, Mapping):
        tree = {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    else:
        raise ConfigError(
            f"config must be a TOML path, a dict or a RunConfig, not {type(config).__name__}"
        )
    apply_overrides(tree, overrides)
    return config_from_dict(tree)


class Run(SavedRun):
    """A finished run with the export and predict commands as methods."""

    @property
    def config(self) -> RunConfig:
        """The resolved config of the run."""
        return self.cfg

    def export(self, out: str | Path, client: str | None = None, **options: bool) -> list[Path]:
        """``fedsa export`` from Python.

        Give ``client=ID``, or ``all_clients=True`` / ``global_model=True``; ``merge=True`` for a
        transformers model; ``overwrite=True`` to replace ``out``.
        """
        from fedsa.use.export import export

        return export(self, Path(out), client=client, **options)

    def predict(self, client: str, texts: Sequence[str | tuple[str, str]]) -> list[dict[str, Any]]:
        """``fedsa predict`` on in-memory inputs: texts, or (text, text) pairs for pair tasks."""
        from fedsa.use.inputs import Item
        from fedsa.use.predict import predict

        items = [Item(t) if isinstance(t, str) else Item(t[0], t[1]) for t in texts]
        return predict(self, self.check_client(client), items)


def run(
    config: ConfigLike,
    overrides: Sequence[str] = (),
    *,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
) -> Run:
    """Run one experiment into the run directory ``out`` and open the result.

    Args:
        config: a TOML file, a nested dict, or a :class:`RunConfig`.
        overrides: ``dotted.key=value`` strings, as on the command line.
        out: the run directory to create (or, with ``resume``, to continue).
        overwrite: replace an earlier run in ``out``.
        resume: continue the run in ``out`` from its newest checkpoint (same config).
    """
    from fedsa.engine.runner import run as run_engine

    cfg = resolve_config(config, overrides)
    run_engine(cfg, Path(out), overwrite=overwrite, resume=resume)
    return Run(Path(out))


def load_run(path: str | Path) -> Run:
    """A finished run directory (from ``fedsa run``, ``fedsa compare`` or :func:`run`)."""
    return Run(Path(path))
