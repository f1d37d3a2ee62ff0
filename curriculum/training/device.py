"""Where training runs and at which precision: `auto` resolved once, and recorded with every run."""

from __future__ import annotations

import contextlib
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """The resolved settings that change the numbers besides the config: the same config on another
    device, dtype, torch version or thread count trains to (slightly) different weights."""

    device: str
    dtype: str
    compile: bool
    torch_version: str
    numpy_version: str
    threads: int
    cpu_bf16: bool
    machine: str
    world_size: int = 1  # training processes (DDP); another number trains to slightly different weights

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.torch_device.type, dtype=DTYPES[self.dtype])

    def to_json(self) -> dict:
        return asdict(self)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but PyTorch sees no CUDA GPU; use train.device=auto or cpu")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("train.device='mps' but MPS is not available here; use train.device=auto or cpu")
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 / AMX-BF16 on x86, BF16 on Arm: bf16 matrix products run natively and beat fp32.

    Without these, bf16 is emulated and rarely faster, so `auto` stays with float32. Read from
    /proc/cpuinfo, so on other systems (macOS, Windows) the answer is False."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_dtype(requested: str, device: torch.device) -> str:
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device.type == "cpu":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return "float32"  # MPS: autocast support there is partial


def resolve_runtime(device: str, dtype: str, compile: bool) -> Runtime:
    torch_device = resolve_device(device)
    world_size = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world_size = torch.distributed.get_world_size()
        if torch_device.type == "cuda":  # the GPU the worker was given (torch.cuda.set_device(local rank))
            torch_device = torch.device("cuda", torch.cuda.current_device())
    return Runtime(
        device=str(torch_device),
        dtype=resolve_dtype(dtype, torch_device),
        compile=compile,
        torch_version=torch.__version__,
        numpy_version=np.__version__,
        threads=torch.get_num_threads(),
        cpu_bf16=cpu_has_native_bf16(),
        machine=platform.machine(),
        world_size=world_size,
    )
