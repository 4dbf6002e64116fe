"""Starting or joining Ray for one job."""

from __future__ import annotations

import ray

from engine.spec import JobSpec

GiB = 1 << 30


def ray_init_local(workers: int, object_store_bytes: int) -> None:
    # Explicit figures: Ray must not size itself from the whole machine. address="local"
    # starts a private instance even when a `ray start` cluster runs on this machine.
    ray.init(
        address="local",
        num_cpus=workers + 1,
        object_store_memory=object_store_bytes,
        _memory=max(2 * GiB, object_store_bytes),
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=True,
    )


def object_store_size(spec: JobSpec, in_flight: int) -> int:
    """Room for every segment in flight twice over (render result + stitcher input)."""
    segment_bytes = (spec.segment_seconds * spec.fps + spec.overlap) * spec.width * spec.height * 3
    return int(min(max(512 << 20, 2.5 * in_flight * segment_bytes), 16 * GiB))


def connect(spec: JobSpec, address: str | None, in_flight: int) -> bool:
    """Join `address` or start a local Ray sized for the job; True if this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, configure_logging=False)
    else:
        ray_init_local(spec.workers, object_store_size(spec, in_flight))
    return True
