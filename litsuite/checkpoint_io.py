"""Checkpoint files that are either complete or absent, and a readability check for hand-picked ones.

:class:`AtomicCheckpointIO` is the Trainer's ``CheckpointIO`` plugin (added by :mod:`litsuite.cli`):
a run killed while saving keeps its previous ``last.ckpt`` intact, so ``--resume auto`` always
finds a loadable file. :func:`checkpoint_problem` turns a truncated or foreign file passed by hand
(``train.py --resume``, ``evaluate.py --ckpt``) into one line instead of a stack trace.
"""

from __future__ import annotations

import os
import pickle
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
    writer serialises to memory first but then truncates and rewrites the target in place, which a
    SIGKILL or a full disk can interrupt. Remote paths (``s3://`` and the like) go to that writer.
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


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed or evaluated from, in one line; None when it loads.

    The file is opened memory-mapped, so this costs little even for large checkpoints: a truncated
    or overwritten file fails on its zip directory. A file torch's weights-only loader refuses for
    its contents (not its shape) is left to Lightning, which decides how to load it.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        return f"{path}: no such checkpoint"
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            return None
        return _unreadable(path, err)
    except Exception as err:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        return _unreadable(path, err)
    if not isinstance(state, dict) or "state_dict" not in state:
        return f"{path} is a torch file but not a Lightning checkpoint (no 'state_dict'); pass one train.py wrote"
    return None


def _unreadable(path: Path, err: BaseException) -> str:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    others = sorted(p.name for p in Path(path).parent.glob("*.ckpt") if p.name != Path(path).name)
    hint = f"; other checkpoints there: {', '.join(others)}" if others else ""
    return f"{path} is not a readable checkpoint (truncated or corrupt: {reason}){hint}"
