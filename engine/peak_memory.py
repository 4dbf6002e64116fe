"""Peak memory of this process, for the stats the loop reports per worker.

Backend-agnostic and cheap (one syscall or one counter read per segment): the peak GPU memory
torch allocated when this process has used CUDA, else the process's peak resident set. It never
imports torch: a process whose backend did not import it has no GPU memory to report.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
from dataclasses import dataclass

GPU, RSS = "gpu", "rss"


@dataclass(frozen=True)
class PeakMemory:
    """One process's peak so far."""

    bytes: int
    kind: str  # GPU: torch.cuda.max_memory_allocated over its devices; RSS: peak resident set
    process: str  # "host:pid": tells workers apart, and a restarted worker from its old self


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _cuda_peak() -> int | None:
    torch = sys.modules.get("torch")  # only if the backend imported it
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is None or not cuda.is_initialized():
            return None
        return sum(int(cuda.max_memory_allocated(i)) for i in range(cuda.device_count()))
    except (RuntimeError, AttributeError):  # a torch without CUDA support, a broken driver
        return None


def _rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def peak_memory() -> PeakMemory:
    """This process's peak: GPU memory when it has used CUDA, else its peak RSS."""
    gpu = _cuda_peak()
    if gpu is not None:
        return PeakMemory(gpu, GPU, process_name())
    return PeakMemory(_rss_peak(), RSS, process_name())
