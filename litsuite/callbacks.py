"""Callbacks every run carries (listed in ``configs/base.yaml``)."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import Callback


class RNGStateCheckpoint(Callback):
    """Stores the Python, NumPy and torch (CPU and CUDA) random states in every checkpoint.

    Restoring them makes a resumed run draw the same dropout masks, noise and augmentations as an
    uninterrupted one, so the two end with the same weights.
    """

    def state_dict(self) -> dict:
        # Only tensors and plain Python values, so that torch.load(weights_only=True) accepts the checkpoint.
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        random.setstate(state_dict["python"])
        n = state_dict["numpy"]
        if isinstance(n, tuple):  # checkpoints written before the state was stored as tensors
            np.random.set_state(n)
        else:
            np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
