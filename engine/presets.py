"""Named bundles of format settings; explicit flags always win over a preset."""

from __future__ import annotations

BASE: dict[str, object] = {
    "fps": 30, "size": "256x256", "crf": 23, "encoder_preset": "veryfast", "overlap": 16,
    "hls_segment_seconds": 2.0,
}

PRESETS: dict[str, dict[str, object]] = {
    # Quick look at a story: small, low frame rate, fastest encode.
    "draft": {"fps": 15, "size": "128x128", "crf": 28, "encoder_preset": "ultrafast",
              "overlap": 4, "hls_segment_seconds": 2.0},
    # Real time on a 2-core CPU: fastest encode, short blends, 1 s HLS segments for low latency.
    "live": {"fps": 30, "size": "256x256", "crf": 23, "encoder_preset": "ultrafast",
             "overlap": 8, "hls_segment_seconds": 1.0},
    # Offline quality: bigger frames, slower encode, long blends.
    "hq": {"fps": 30, "size": "512x512", "crf": 18, "encoder_preset": "medium", "overlap": 16,
           "hls_segment_seconds": 2.0},
}


def resolve(preset: str | None, explicit: dict[str, object]) -> dict[str, object]:
    """Settings for a render: explicit (non-None) values, then the preset, then BASE."""
    chosen = {**BASE, **(PRESETS[preset] if preset else {})}
    chosen.update({k: v for k, v in explicit.items() if v is not None})
    return chosen
