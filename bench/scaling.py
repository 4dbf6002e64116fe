"""How the engine scales when Stage 2 is a GPU's work: the `gpu-like` backend (bench/gpu_like.py)
on 1, 2, 4, 8, 16 segment workers, side by side in one run.

    python -m bench.scaling [--workers 1,2,4,8,16] [--seconds 120] [--segment-cost 2.0]
                            [--size 256x256] [--json FILE] [--smoke]

A Ray head with room for every worker is started here (token auth, explicit CPUs, memory and
object store; the segment actors sleep, so CPUs are only slots), and each render is a real
`lvp render --address` subprocess. Printed per worker count: wall and loop seconds, throughput
(video seconds per loop second), parallel efficiency against one worker, the ideal the segment
cost allows, Stage 1 and stitcher (blend + encode) seconds per video second -- the serial
parts that cap the speed-up -- and the bytes per video second the segment actors ship to the
stitcher through the object store (the run report's `shipped_bytes`: packets and raw overlaps
since the actors encode; LVP_ENCODE_IN_STITCHER=1 ships raw frames). Then keyframes-first
(`--schedule parallel`) against the autoregressive chain at the largest count, and with
`--two-nodes` the same render on two Ray nodes of this machine: Stage 1 and the stitcher on the
head, every segment actor on a second node started with its own resources; the bytes that
cross between them are the shipped bytes (reported by lvp) and, measured outside lvp, the
loopback interface's traffic during the render (both nodes talk over 127.0.0.1; it includes
Ray's own control traffic).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(cpus: int, env: dict[str, str], object_store: int = 1 << 30):
    port = _free_port()
    temp = Path("/tmp") / f"lvp-scale-{secrets.token_hex(3)}"
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", str(cpus), "--memory", str(4 << 30), "--object-store-memory",
         str(object_store), "--include-dashboard=false", "--temp-dir", str(temp)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or head.poll() is not None:
                raise RuntimeError("the Ray head did not start")
            time.sleep(0.5)
        time.sleep(3)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)


def render(folder: Path, name: str, address: str, env: dict[str, str], costs: Path,
           seconds: float, size: str, workers: int, *extra: str) -> dict:
    out = folder / f"{name}.mp4"
    cmd = [sys.executable, "-m", "cli", "render", "--model", "gpu-like", "--weights", str(costs),
           "--prompt", "benchmark texture", "--duration", str(seconds), "--size", size,
           "--workers", str(workers), "--address", address, "--out", str(out), "--quiet",
           "--overwrite", *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-600:]}")
    return json.loads(out.with_suffix(".json").read_text())


def figures(report: dict, seconds: float) -> dict:
    stages = report["stage_seconds"]
    loop = report["loop_seconds"]
    return {"wall_s": round(report["wall_seconds"], 2), "loop_s": round(loop, 2),
            "throughput": round(seconds / loop, 3),
            "stage1_s_per_video_s": round(stages["keyframe"] / seconds, 4),
            "stitcher_s_per_video_s": round((stages["blend"] + stages["encode"]) / seconds, 4),
            "worker_encode_s_per_video_s": round(stages.get("segment_encode", 0.0) / seconds, 4),
            "object_store_MB_per_video_s": round(report["shipped_bytes"] / seconds / 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--segment-cost", type=float, default=2.0,
                        help="seconds of (GPU) time per 5-s segment")
    parser.add_argument("--keyframe-cost", type=float, default=0.01)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--chain-workers", type=int, default=8,
                        help="worker count of the keyframes-first vs chain comparison")
    parser.add_argument("--no-chain", action="store_true", help="skip the chain comparison")
    parser.add_argument("--two-nodes", action="store_true",
                        help="also render with the segment actors on a second Ray node")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks that it runs")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    if args.smoke:
        counts, args.seconds, args.segment_cost, args.size = [1, 2], 20.0, 0.3, "64x64"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    results: dict = {"machine": {"cpus": os.cpu_count()}, "seconds": args.seconds,
                     "segment_cost": args.segment_cost, "size": args.size, "runs": {}}
    ideal_one = 5.0 / args.segment_cost  # video seconds per second of one worker, Stage 2 only
    with tempfile.TemporaryDirectory(prefix="lvp-scale-") as tmp, \
            ray_head(max(counts) + 2, env) as address:
        folder = Path(tmp)
        costs = folder / "costs.json"
        costs.write_text(json.dumps({"segment_seconds": args.segment_cost,
                                     "keyframe_seconds": args.keyframe_cost}))
        print("workers | loop s | throughput (video s/s) | efficiency | ideal | Stage 1 s/video s | "
              "stitcher s/video s | worker encode s/video s | object store MB/video s", flush=True)
        base = None
        for n in counts:
            row = figures(render(folder, f"w{n}", address, env, costs, args.seconds, args.size, n),
                          args.seconds)
            base = base or row["throughput"] / n  # per worker, at the smallest count
            row["efficiency"] = round(row["throughput"] / (n * base), 3)
            row["ideal_throughput"] = round(n * ideal_one, 2)
            results["runs"][n] = row
            print(f"{n} | {row['loop_s']} | {row['throughput']} | {row['efficiency']} | "
                  f"{row['ideal_throughput']} | {row['stage1_s_per_video_s']} | "
                  f"{row['stitcher_s_per_video_s']} | {row['worker_encode_s_per_video_s']} | "
                  f"{row['object_store_MB_per_video_s']}",
                  flush=True)
        n = args.chain_workers if args.chain_workers in counts else max(counts)
        if args.no_chain:
            n = 0
        chain = {} if not n else figures(
            render(folder, "chain", address, env, costs, args.seconds, args.size, n,
                   "--schedule", "chain"), args.seconds)
        if chain:
            results["chain"] = {"workers": n, **chain}
            print(f"keyframes-first vs chain at {n} workers: throughput "
                  f"{results['runs'][n]['throughput']} vs {chain['throughput']} "
                  f"({results['runs'][n]['throughput'] / chain['throughput']:.2f}x)", flush=True)
        results["caps"] = caps(results["runs"], os.cpu_count() or 1)
        print(f"serial cap (1 / the slower of Stage 1 and the stitcher, s per video s, at "
              f"{max(counts)} workers): {results['caps']['serial']} video s/s; CPU cap ({os.cpu_count()} "
              f"cores / CPU seconds per video s of Stage 1, stitcher and worker encodes, one "
              f"worker): "
              f"{results['caps']['cpu']} video s/s; {max(counts)} workers reach "
              f"{results['caps']['efficiency_vs_cap']:.0%} of min({max(counts)} x one worker, "
              f"serial cap)", flush=True)
        if args.two_nodes:
            results["two_nodes"] = two_nodes(folder, env, costs, args, n)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def caps(runs: dict, cpus: int) -> dict:
    """What caps the speed-up, measured at the largest worker count: the serial parts (Stage 1
    and the stitcher run beside each other, so the slower one), and on a small machine the CPU
    every part needs (the workers' encodes share its cores; on GPU nodes each has its own)."""
    most, one = max(runs), runs[min(runs)]
    row = runs[most]
    serial = 1.0 / max(row["stage1_s_per_video_s"], row["stitcher_s_per_video_s"])
    # CPU seconds per video second, taken where nothing competes for the cores (one worker).
    cpu = cpus / (one["stage1_s_per_video_s"] + one["stitcher_s_per_video_s"]
                  + one["worker_encode_s_per_video_s"])
    bound = min(most * one["throughput"] / min(runs), serial)
    return {"serial": round(serial, 2), "cpu": round(cpu, 2),
            "efficiency_vs_cap": row["throughput"] / bound}


def loopback_bytes() -> int:
    """Bytes received on the loopback interface so far (/proc/net/dev)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[0])
    raise RuntimeError("no loopback interface in /proc/net/dev")


def two_nodes(folder: Path, env: dict[str, str], costs: Path, args: argparse.Namespace,
              workers: int) -> dict:
    """The render with its segment actors on a second node: Stage 1 and the stitcher take
    the head's one CPU, the actors the worker node's."""
    with ray_head(1, env) as address:
        node = subprocess.Popen(
            [RAY, "start", "--address", address, "--block", "--node-ip-address", "127.0.0.1",
             "--num-cpus", str(workers), "--memory", str(4 << 30),
             "--object-store-memory", str(1 << 30)],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            time.sleep(8)
            before = loopback_bytes()
            report = render(folder, "two_nodes", address, env, costs, args.seconds, args.size,
                            workers)
            crossed = loopback_bytes() - before
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(30)
    row = {**figures(report, args.seconds), "workers": workers,
           "shipped_MB": round(report["shipped_bytes"] / 1e6, 2),
           "loopback_MB": round(crossed / 1e6, 2)}
    print(f"two nodes, {workers} workers on the second: throughput {row['throughput']}, "
          f"shipped to the stitcher {row['shipped_MB']} MB "
          f"({row['object_store_MB_per_video_s']} MB/video s), loopback traffic during the "
          f"render {row['loopback_MB']} MB", flush=True)
    return row


if __name__ == "__main__":
    main()
