"""Checkpoint files that are either complete or absent, and a readability check for hand-picked ones.

:class:`AtomicCheckpointIO` is the Trainer's ``CheckpointIO`` plugin (added by :mod:`litsuite.cli`):
a run killed while saving keeps its previous ``last.ckpt`` intact, so ``--resume auto`` always
finds a loadable file. :func:`checkpoint_problem` turns a truncated or foreign file passed by hand
(``train.py --resume``, ``evaluate.py --ckpt``) into one line instead of a stack trace.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

TMP_MARK = ".tmp-"  # temporary files are ".<name>.tmp-<pid>": hidden, and never matched by "*.ckpt"


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some file systems do not allow opening a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes to a temporary file beside the target, fsyncs it, then renames it.

    ``os.replace`` within one directory is atomic on POSIX file systems, so a reader (or a resumed
    job) sees either the old checkpoint or the new one, never a truncated mix. Lightning's own
    writer (``lightning.fabric.utilities.cloud_io._atomic_save``) also avoids writing the target in
    place: it serialises the whole checkpoint into a memory buffer, writes that inside an fsspec
    transaction to a temporary file made by ``tempfile.mkstemp()`` in the system's temporary folder
    (``$TMPDIR``, usually ``/tmp``), and moves it over the target with ``shutil.move`` on commit.
    What it lacks: no fsync, so after a power loss the new name may point at data never written to
    disk; and the temporary file sits on another file system whenever the runs folder is not on
    ``/tmp``'s (a shared or scratch file system, as on clusters), where ``shutil.move`` falls back to
    copying into the target, not atomic, and ``/tmp`` must hold a full copy. Here the temporary file
    is written straight to disk (no second copy in memory) beside the target. Remote paths
    (``s3://`` and the like) go to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: the state Lightning assembled.
            path: the target file.
            storage_options: not supported, as in ``TorchCheckpointIO``.
        """
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}{TMP_MARK}*"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the data must be on disk before the name points at it
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)


class CheckpointMismatch(ValueError):
    """A checkpoint that loads but does not fit the settings it is resumed with; the message names the fix.

    Raised by a model's ``on_load_checkpoint``; ``train.py`` reports it in one line.
    """


def checkpoint_problem(path: Path, model_class_path: str | None = None) -> str | None:
    """Why ``path`` cannot be resumed or evaluated from, in one line; None when it loads.

    The file is opened memory-mapped, so this costs little even for large checkpoints: a truncated
    or overwritten file fails on its zip directory. A file torch's weights-only loader refuses for
    its contents (not its shape) is left to Lightning, which decides how to load it.

    Args:
        path: the checkpoint file.
        model_class_path: the model class it will be loaded into; a checkpoint that names another
            (LightningCLI records ``_class_path`` in its hyperparameters) is refused.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        return f"{path}: no such checkpoint"
    except IsADirectoryError:
        return f"{path} is a folder, not a checkpoint file"
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            return None
        return _unreadable(path)
    except Exception:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        return _unreadable(path)
    if not isinstance(state, dict) or "state_dict" not in state:
        return f"{path} is a torch file but not a Lightning checkpoint (no 'state_dict'); pass one train.py wrote"
    saved = (state.get("hyper_parameters") or {}).get("_class_path")
    if model_class_path and isinstance(saved, str) and saved != model_class_path:
        from litsuite.registry import model_name_of

        return (
            f"{path} holds a {model_name_of(saved)} model ({saved}), not the {model_name_of(model_class_path)} "
            f"this run trains; use a checkpoint of this run{_others(path)}"
        )
    return None


def describe_state_dict_mismatch(text: str) -> str | None:
    """A few words for torch's ``load_state_dict`` error: how many weights are missing, unexpected or
    of another shape (naming the first). None for any other error text."""
    if "Error(s) in loading state_dict" not in text:
        return None
    parts = []
    for label, pattern in (("missing", r"Missing key\(s\) in state_dict: (.*)"),
                           ("unexpected", r"Unexpected key\(s\) in state_dict: (.*)")):
        if found := re.search(pattern, text):
            count = len(re.findall(r'"[^"]+"', found.group(1)))
            parts.append(f"{count} {label} weights")
    if sizes := re.findall(r"size mismatch for ([\w.]+)", text):
        parts.append(f"{len(sizes)} of another shape, first {sizes[0]}")
    return ", ".join(parts) or "the weights do not match"


def saved_step(path: Path) -> int:
    """The optimiser step a checkpoint was saved at (0 when it does not record one)."""
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(state.get("global_step", 0)) if isinstance(state, dict) else 0


def _others(path: Path) -> str:
    """The other checkpoints beside ``path``, as a hint to pick one of them."""
    others = sorted(p.name for p in path.parent.glob("*.ckpt") if p.name != path.name)
    return f"; other checkpoints there: {', '.join(others)}" if others else ""


def _unreadable(path: Path) -> str:
    """Plain words for a file torch cannot open: empty, not a checkpoint at all, or cut short / damaged."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = path.stat().st_size
    except OSError as err:
        return f"{path} cannot be read ({err.strerror or type(err).__name__})"
    if size == 0:
        what = "is empty (0 bytes): the save that made it never wrote anything"
    elif head != b"PK\x03\x04":  # torch.save has written zip archives since torch 1.6
        what = "is not a checkpoint (not the zip archive torch.save writes)"
    else:
        what = f"is truncated or corrupt ({size:,} bytes; its table of contents is missing or damaged)"
    return f"{path} is not a readable checkpoint: it {what}{_others(path)}"
