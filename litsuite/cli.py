"""The LightningCLI behind ``train.py`` and ``evaluate.py``.

Models and data modules are chosen by ``class_path`` in the registry YAMLs (subclass mode). Shapes
a model needs from its data (``input_shape``, ``num_classes``, ...) are linked from the
instantiated data module, so one model config serves every data set.
"""

from __future__ import annotations

import inspect
from argparse import ArgumentError
from datetime import timedelta

from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import DDPStrategy

from litsuite import runs
from litsuite.checkpoint_io import AtomicCheckpointIO
from litsuite.config_errors import (  # noqa: F401 - ConfigError and one_line are imported from here
    DATA_TO_MODEL_LINKS,
    ConfigError,
    check_yaml_syntax,
    config_files,
    describe_parse_error,
    import_class,
    innermost_cause,
    one_line,
)
from litsuite.progress import PROGRESS_EVERY_S, progress_bar_for
from litsuite.quiet import silence_known_noise, silence_wandb_settings_warning
from litsuite.requeue import PreemptionHandler, slurm_batch_job
from litsuite.run_checkpoint import RunCheckpoint
from litsuite.summary import SuiteModelSummary

silence_known_noise()

# How long a DDP collective waits for a missing rank before the run fails (--ddp_timeout_minutes).
# A rank that dies usually takes the others down at once (closed connection, srun --kill-on-bad-exit,
# Lightning's child-process observer); this bounds the rest: a rank stuck without dying.
DDP_TIMEOUT_MINUTES = 30.0


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
        parser.add_argument(
            "--progress_every_s",
            type=float,
            default=PROGRESS_EVERY_S,
            help="seconds between two progress lines when standard output is not a terminal (a log file)",
        )
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "best-{epoch}-{step}"})
        accepted = inspect.signature(import_class(self._model_class_path).__init__).parameters
        for name in DATA_TO_MODEL_LINKS:
            if name in accepted:
                parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with the suite's fixed parts added to what the config asks for.

        Added unless the config brings its own: a progress display (unless ``enable_progress_bar``
        is false; Rich's bar on a terminal, a line every ``progress_every_s`` seconds otherwise), the
        model summary without empty columns, the atomic checkpoint writer, the preemption handler,
        and under a SLURM batch job Lightning's ``SLURMEnvironment`` with its in-handler auto-requeue
        switched off (the preemption handler requeues instead, outside the signal handler). DDP
        strategies get the ``ddp_timeout_minutes`` timeout and the model's ``ddp_options``.
        """
        config = {**(self.config_init.get("trainer") or {}), **kwargs}
        callbacks = config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        added = []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            added.append(progress_bar_for(self.config_init.get("progress_every_s", PROGRESS_EVERY_S)))
        if config.get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
            added.append(SuiteModelSummary())
        under_slurm = slurm_batch_job()
        if not any(isinstance(c, PreemptionHandler) for c in callbacks):
            added.append(PreemptionHandler(requeue=under_slurm))
        # LightningCLI adds the checkpoint section's callback and the config saver to these
        kwargs = {**kwargs, "callbacks": callbacks + added, "plugins": self._plugins(config, under_slurm)}
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.is_global_zero and any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            silence_wandb_settings_warning()
        if isinstance(trainer.strategy, DDPStrategy):
            self._configure_ddp(trainer.strategy)
        return trainer

    def _configure_ddp(self, strategy: DDPStrategy) -> None:
        """Give a DDP strategy the configured timeout and the model's DistributedDataParallel options.

        Lightning takes both only as ``DDPStrategy`` constructor arguments (the timeout since
        Lightning-AI/pytorch-lightning#13211), and a strategy named by a string (``auto``, ``ddp``,
        ``ddp_find_unused_parameters_true``) is resolved and built inside the Trainer, from the
        devices, nodes and cluster it finds. Building the strategy here instead would repeat that
        resolution, so the two values are set on the strategy the Trainer built; DDPStrategy reads
        them at the start of fit, when it creates the process group and wraps the model.
        """
        minutes = self.config_init.get("ddp_timeout_minutes", DDP_TIMEOUT_MINUTES)
        strategy._timeout = timedelta(minutes=minutes)
        # a model's options (class attribute ``ddp_options``); a strategy configured with its own values keeps them
        for key, value in (getattr(self.model, "ddp_options", None) or {}).items():
            strategy._ddp_kwargs.setdefault(key, value)

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

    def instantiate_classes(self) -> None:
        """Build model, data and Trainer; a class that refuses its arguments is reported by its own error.

        jsonargparse wraps such an error in the text of every type the section accepts
        (omni-us/jsonargparse#695), with the class's own exception as the innermost cause; that one
        is raised instead.
        """
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            if (cause := innermost_cause(err)) is err:
                raise
            raise cause from None

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse as LightningCLI does; a rejected configuration becomes one :class:`ConfigError` line."""
        files = config_files(list(args or []))
        for path in files:
            check_yaml_syntax(path)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(describe_parse_error(err, list(parser.get_defaults().keys()), files)) from None
