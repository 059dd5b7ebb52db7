"""SuiteCLI: configuration errors in one line naming key and file, and DDP settings reaching the strategy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from litsuite import registry
from litsuite.cli import ConfigError, SuiteCLI

QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]


def build(*extra: str, model: str = "linear_ae") -> SuiteCLI:
    args = ["--config", str(registry.BASE_CONFIG), "--config", str(registry.model_config(model)), *QUIET, *extra]
    return SuiteCLI(args, registry.model_class_path(model), save_config=False)


def config_error(*extra: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build(*extra)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_a_bad_value_names_its_key_and_the_expected_type():
    assert config_error("--model.k", "abc") == "model.k: expected int, got 'abc'"
    assert config_error("--data.init_args.batch_size", "x") == "data.batch_size: expected int, got 'x'"
    assert config_error("--trainer.max_epochs", "x") == "trainer.max_epochs: expected int, got 'x'"


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "my.yaml"
    bad.write_text("trainer:\n  max_epochs: 3\n  devices: [1\n")
    message = config_error("--config", str(bad))
    assert message.startswith(f"{bad}, line 4, column 1: not valid YAML"), message


def test_a_mistyped_key_in_a_file_names_the_file_the_close_key_and_the_valid_ones(tmp_path):
    typo = tmp_path / "my.yaml"
    typo.write_text("model:\n  init_args:\n    kk: 3\ntrainer:\n  max_epochs: 2\n")
    message = config_error("--config", str(typo))
    assert message.startswith(f"unknown key 'model.kk' in {typo}"), message
    assert "(did you mean 'k'?)" in message and message.endswith("valid keys: " + ", ".join(
        ["k", "sweep", "optimizer", "lr", "momentum", "lr_min_factor", "svd_method"]))

    typo.write_text("trainer:\n  max_epochz: 3\n")
    message = config_error("--config", str(typo))
    assert message.startswith(f"unknown key 'trainer.max_epochz' in {typo} (did you mean 'max_epochs'?)"), message
    assert "valid keys: " in message and "check_val_every_n_epoch" in message


def test_a_mistyped_key_on_the_command_line_lists_the_valid_keys():
    message = config_error("--trainer.max_epochz", "3")
    assert message.startswith("unknown key 'trainer.max_epochz' (did you mean 'max_epochs'?); valid keys: ")
    message = config_error("--checkpoint.mdoe", "max")
    assert message.startswith("unknown key 'checkpoint.mdoe' (did you mean 'mode'?); valid keys: dirpath, ")


def test_a_class_that_refuses_a_value_is_reported_by_its_own_message():
    """jsonargparse wraps the model's ValueError in its list of accepted types; the model's own words come out."""
    with pytest.raises(ValueError, match=r"^k must lie in 1\.\.64 .*got 1000$"):
        build("--model.k", "1000")


def test_ddp_timeout_and_model_options_reach_a_strategy_named_by_a_string():
    """DDPStrategy takes both only in its constructor; "auto" becomes DDP inside the Trainer."""
    cli = build("--trainer.devices", "2", "--trainer.strategy", "auto", "--ddp_timeout_minutes", "7")
    assert cli.trainer.strategy._timeout == timedelta(minutes=7)
    assert cli.trainer.strategy._ddp_kwargs  # linear_ae's buffers need no re-broadcast: see its ddp_options
    cli = build("--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_true")
    assert cli.trainer.strategy._timeout == timedelta(minutes=30)
    assert cli.trainer.strategy._ddp_kwargs["find_unused_parameters"] is True
