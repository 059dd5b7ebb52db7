"""The LightningCLI behind ``train.py`` and ``evaluate.py``.

Models and data modules are chosen by ``class_path`` in the registry YAMLs (subclass mode). Shapes
a model needs from its data (``input_shape``, ``num_classes``, ...) are linked from the
instantiated data module, so one model config serves every data set.
"""

from __future__ import annotations

import importlib
import inspect
import re
from argparse import ArgumentError
from datetime import timedelta

from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.strategies import DDPStrategy

from litsuite import runs
from litsuite.checkpoint_io import AtomicCheckpointIO
from litsuite.quiet import silence_known_noise
from litsuite.requeue import PreemptionHandler, slurm_batch_job
from litsuite.run_checkpoint import RunCheckpoint

silence_known_noise()

# Attributes of a data module passed to the model's __init__ when the model accepts them.
DATA_TO_MODEL_LINKS = ("input_shape", "num_classes", "class_names", "vocab_size")
# How long a DDP collective waits for a missing rank before the run fails (--ddp_timeout_minutes).
# A rank that dies usually takes the others down at once (closed connection, srun --kill-on-bad-exit,
# Lightning's child-process observer); this bounds the rest: a rank stuck without dying.
DDP_TIMEOUT_MINUTES = 30.0


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class ConfigError(ValueError):
    """A configuration the parser rejected, reduced to one line."""


def valid_keys(class_path: str) -> list[str]:
    """The keyword arguments a class accepts, minus those linked from the data module."""
    params = inspect.signature(import_class(class_path).__init__).parameters
    return [
        n
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in DATA_TO_MODEL_LINKS
    ]


def one_line(message: str) -> str:
    """Reduce jsonargparse's nested error text to one line that names the key and the valid choices."""
    text = str(message)
    section = re.search(r'Parser key "(\w+)"', text)
    class_path = re.search(r"class_path '([\w.]+)'", text)
    option = re.search(r"Option '(\w+)' is not accepted", text)
    if section and class_path and option:
        keys = ", ".join(valid_keys(class_path.group(1)))
        return f"unknown key '{section.group(1)}.{option.group(1)}' for {class_path.group(1)}; valid keys: {keys}"
    lines = [ln.strip(" -") for ln in text.splitlines() if ln.strip(" -")]
    useful = [
        ln
        for ln in lines
        if not re.match(
            r"(Does not validate|Subtypes:|Errors:|Expected a <class 'NoneType'>"
            r"|Given value|Problem with given class_path|Parser key)",
            ln,
        )
    ]
    return re.sub(r"\s+", " ", (useful or lines or [text])[0])


class SuiteCLI(LightningCLI):
    """LightningCLI without subcommands, with a checkpoint section and data→model links.

    Args:
        args: command-line style arguments (``--config`` files first, overrides after).
        model_class_path: the model's class, read from its registry YAML, used to decide the links.
        save_config: write the resolved config as ``config.yaml`` into the Trainer's log directory.
    """

    def __init__(self, args: list[str], model_class_path: str, save_config: bool = True) -> None:
        self._model_class_path = model_class_path
        super().__init__(
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveConfigCallback if save_config else None,
            save_config_kwargs={"overwrite": True, "config_filename": runs.CONFIG_NAME},
            parser_kwargs={"exit_on_error": False},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
            run=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_argument(
            "--ddp_timeout_minutes",
            type=float,
            default=DDP_TIMEOUT_MINUTES,
            help="minutes a DDP collective waits for the other ranks before the run fails",
        )
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "best-{epoch}-{step}"})
        accepted = inspect.signature(import_class(self._model_class_path).__init__).parameters
        for name in DATA_TO_MODEL_LINKS:
            if name in accepted:
                parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with the suite's fixed parts added to what the config asks for.

        Added unless the config brings its own: a Rich progress bar (unless ``enable_progress_bar``
        is false), the atomic checkpoint writer, the preemption handler, and under a SLURM batch job
        Lightning's ``SLURMEnvironment`` with its in-handler auto-requeue switched off (the
        preemption handler requeues instead, outside the signal handler). DDP strategies get the
        ``ddp_timeout_minutes`` timeout and the model's ``ddp_options``.
        """
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in configured):
            extra.append(RichProgressBar())
        under_slurm = slurm_batch_job()
        if not any(isinstance(c, PreemptionHandler) for c in configured):
            extra.append(PreemptionHandler(requeue=under_slurm))
        config["plugins"] = self._plugins(config, under_slurm)
        trainer = self._instantiate_trainer(config, extra)
        if isinstance(trainer.strategy, DDPStrategy):
            # DDPStrategy only takes the timeout in its constructor, and "auto"/"ddp" strings are resolved
            # inside the Trainer; the value is read when the process group is created, at the start of fit.
            minutes = self._get(self.config_init, "ddp_timeout_minutes", default=DDP_TIMEOUT_MINUTES)
            trainer.strategy._timeout = timedelta(minutes=minutes)
            # DistributedDataParallel options a model asks for (class attribute ``ddp_options``); a
            # strategy configured with its own values keeps them. Read when DDP wraps the model in fit.
            for key, value in (getattr(self.model, "ddp_options", None) or {}).items():
                trainer.strategy._ddp_kwargs.setdefault(key, value)
        return trainer

    @staticmethod
    def _plugins(config: dict, under_slurm: bool) -> list:
        """The configured plugins plus the atomic checkpoint writer and, under SLURM, the cluster environment."""
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        strategy = config.get("strategy")  # a Strategy object may carry its own (the Trainer rejects two)
        if getattr(strategy, "_checkpoint_io", None) is None and not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        strategy_env = getattr(strategy, "cluster_environment", None)
        if under_slurm and strategy_env is None and not any(isinstance(p, ClusterEnvironment) for p in plugins):
            plugins.append(SLURMEnvironment(auto_requeue=False))
        return plugins

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(one_line(str(err))) from None
