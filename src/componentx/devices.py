"""The device, chosen once (``compute.device``) and honoured by training, evaluation and
scoring: ``auto`` takes a GPU where there is one (torch's CUDA where the process runs torch,
else ONNX Runtime's CUDA provider), else the CPU."""

from __future__ import annotations

import sys

from componentx.errors import ParamsError


def gpus() -> int:
    """GPUs this process can use: torch's count where this process runs torch, else 1 when
    ONNX Runtime has its CUDA provider (scoring a bundle never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import onnxruntime

    return int("CUDAExecutionProvider" in onnxruntime.get_available_providers())


def resolve_device(setting: str, rank: int = 0) -> str:
    """``cpu`` or ``cuda:N`` for ``compute.device`` (under several processes, ``auto`` gives
    each rank its own GPU); a GPU setting on a machine without one is a clear error."""
    count = gpus()
    if setting == "auto":
        return f"cuda:{rank % count}" if count else "cpu"
    if setting.startswith("cuda") and not count:
        raise ParamsError(f"compute.device={setting!r} but no GPU is available")
    return "cuda:0" if setting == "cuda" else setting
