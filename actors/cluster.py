"""Starting or joining Ray for one job."""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator, Sequence

import ray

from engine.errors import InputError
from engine.models.base import backend_class
from engine.spec import JobSpec

GiB = 1 << 30
LOOPBACK = "127.0.0.1"
# Seconds to wait for a cluster to answer and for the workers to start (LVP_START_TIMEOUT).
START_TIMEOUT = float(os.environ.get("LVP_START_TIMEOUT", "60"))


@contextlib.contextmanager
def _loopback_node_ip() -> Iterator[None]:
    """Make Ray take the loopback address as this node's IP while it starts.

    Ray binds the GCS, the raylet, the object manager, every worker and its agents to the
    node IP, found from the default route (a LAN address). `_node_ip_address="127.0.0.1"`
    alone is not enough on Linux: ray.init turns a loopback address back into the routed one
    unless `ray_constants.ENABLE_RAY_CLUSTER` is off, which is how Ray itself keeps a
    macOS or Windows laptop on loopback. The flag is only read while the node starts (the
    processes it launches get the IP on their command line), so it is restored afterwards.
    """
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def ray_init_local(workers: int, object_store_bytes: int) -> None:
    # Explicit figures: Ray must not size itself from the whole machine. address="local"
    # starts a private instance even when a `ray start` cluster runs on this machine.
    # Only this machine talks to it: every Ray socket listens on 127.0.0.1, there is no
    # dashboard, and the per-node Prometheus exporter is off (the dashboard head's and the
    # autoscaler's own metrics servers follow the node IP, so they are on loopback too).
    with _loopback_node_ip():
        ray.init(
            address="local",
            num_cpus=workers + 1,
            object_store_memory=object_store_bytes,
            _memory=max(2 * GiB, object_store_bytes),
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            dashboard_host=LOOPBACK,
            _system_config={"enable_metrics_collection": False},
            configure_logging=False,
            # Workers' output stays in Ray's session logs: the user sees lvp's own lines.
            log_to_driver=False,
        )


def object_store_size(spec: JobSpec, in_flight: int) -> int:
    """Room for every segment in flight twice over (render result + stitcher input)."""
    segment_bytes = (spec.segment_seconds * spec.fps + spec.overlap) * spec.width * spec.height * 3
    return int(min(max(512 << 20, 2.5 * in_flight * segment_bytes), 16 * GiB))


def check_reachable(address: str, timeout: float) -> None:
    """A HOST:PORT cluster address that nothing answers on is an error now, not a wait:
    ray.init keeps retrying an absent GCS for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster answers there "
                         f"({exc.strerror or exc})") from None


def connect(spec: JobSpec, address: str | None, in_flight: int,
            timeout: float = START_TIMEOUT) -> bool:
    """Join `address` or start a local Ray sized for the job; True if this call started it."""
    if ray.is_initialized():
        return False
    if address and address != "local":
        check_reachable(address, timeout)
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    else:  # "local" too: a private instance, with the loopback settings above
        ray_init_local(spec.workers, object_store_size(spec, in_flight))
    check_resources(spec)
    return True


def keyframe_gpus(model: str, gpus_per_worker: float) -> float:
    """GPUs the keyframe actor reserves: a segment actor's share when the job asks for GPUs and
    the backend runs Stage 1 on its model (`Capabilities.keyframes_on_gpu`), else none."""
    if gpus_per_worker <= 0 or not backend_class(model).capabilities.keyframes_on_gpu:
        return 0.0
    return gpus_per_worker


def gpu_slots(node_gpus: float, per_actor: float) -> int:
    """How many actors reserving `per_actor` GPUs fit on a node with `node_gpus`: Ray puts a
    fraction of a GPU on one GPU (never across two), and whole GPUs on whole GPUs."""
    eps = 1e-9
    if per_actor < 1:
        return math.floor(node_gpus + eps) * math.floor(1 / per_actor + eps)
    return math.floor(node_gpus / per_actor + eps)


def check_gpus(workers: int, per_worker: float, stage1: float, node_gpus: Sequence[float],
               driver_gpus: float) -> None:
    """Refuse a job the cluster's GPUs cannot hold: `workers` segment actors of `per_worker`
    GPUs each, plus Stage 1's `stage1` on the driver's node (where the keyframe actor is
    pinned). The arithmetic only (the tests need no GPU)."""
    if per_worker <= 0:
        return
    most = max(node_gpus, default=0.0)
    if per_worker > most:
        raise InputError(f"--gpus-per-worker {per_worker:g}: no node of the cluster "
                         f"has that many GPUs (the most on one node: {most:g})")
    if stage1 > 0 and gpu_slots(driver_gpus, stage1) < 1:
        raise InputError(f"Stage 1 of this model runs on a GPU ({stage1:g}, as --gpus-per-worker) "
                         f"on the node lvp runs on, which has {driver_gpus:g} GPU(s): run lvp on "
                         "a node with a GPU")
    needed = workers + (1 if stage1 > 0 else 0)
    room = sum(gpu_slots(n, per_worker) for n in node_gpus)
    if room < needed:
        stage1_part = " + 1 for Stage 1" if stage1 > 0 else ""
        raise InputError(f"--workers {workers} --gpus-per-worker {per_worker:g}: the job needs "
                         f"{needed} actors of {per_worker:g} GPU ({workers} segment worker(s)"
                         f"{stage1_part}, {needed * per_worker:g} GPUs), the cluster has "
                         f"{sum(node_gpus):g} GPUs (room for {room})")


def check_resources(spec: JobSpec) -> None:
    """Refuse what the cluster cannot hold, instead of waiting for it forever."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n.get("Resources", {}) for n in alive]
    cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    here = ray.get_runtime_context().get_node_id()
    driver = next((n.get("Resources", {}) for n in alive if n.get("NodeID") == here), {})
    check_gpus(spec.workers, spec.gpus_per_worker, keyframe_gpus(spec.model, spec.gpus_per_worker),
               [n.get("GPU", 0.0) for n in nodes], driver.get("GPU", 0.0))
    if cpus < 1:
        raise InputError("the cluster has no node with a free CPU for a segment worker")
