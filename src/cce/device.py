"""The library's one device resolution: a device option (auto, cpu, cuda, cuda:N) -> torch.device."""

from __future__ import annotations

import socket

__all__ = ["DeviceError", "DeviceUnavailableError", "resolve_device"]


class DeviceError(ValueError):
    """A device option that is not a device the library runs on (auto, cpu, cuda, cuda:N)."""


class DeviceUnavailableError(DeviceError):
    """The requested device does not exist on this machine."""


def resolve_device(device: str = "auto"):
    """The torch device for ``auto | cpu | cuda | cuda:N``; "auto" is CUDA where available.

    A device that this machine lacks raises :class:`DeviceUnavailableError` with what was
    found instead, so that a run stops before loading data.
    """
    import torch  # here, not at import: the workflow's registries import this module's importers

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device {device!r} is not a torch device ({err}); use auto, cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {device!r} requested but CUDA is not available on {socket.gethostname()} "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); set device to 'auto' "
                "or 'cpu', or run on a machine with an NVIDIA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {device!r} requested but only {torch.cuda.device_count()} "
                                         "CUDA device(s) exist")
    elif dev.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported; use auto, cpu or cuda")
    return dev
