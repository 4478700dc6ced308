"""Checkpoints of a training run: written atomically, read back with every random state.

A checkpoint holds the model, the optimizer, the RNG states of torch (CPU and CUDA), numpy,
Python and the run's own generators, the epoch, the curves and timings, so that a resumed
run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .deep_methods import DeepRunError

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_rng_to_lists(random.getstate()),
    }
    state.update({name: g.get_state() for name, g in generators.items()})
    return state


def _python_rng_to_lists(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in generators.items():
        g.set_state(state[name].cpu())


def save_checkpoint(path: Path | str, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` atomically (temporary file, fsync, rename): a crash leaves the previous one."""
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`train_deep` (tensors only: loaded with ``weights_only=True``)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which
        raise DeepRunError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                           "delete it to start the run from scratch") from err


