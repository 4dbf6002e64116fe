"""Audio conditioning: validate a user audio file and turn it into a per-video-frame beat envelope.

Pure compute (PyAV + numpy). The audio is decoded and resampled to mono float in a streaming
way; only the onset curve (a few hundred bytes per second of audio) is kept in memory, never
the decoded samples.

How :func:`beat_envelope` works:

1. Onset curve on a fixed internal grid (every ``_HOP_S`` = 8 ms of audio, independent of the
   video fps): Hann-windowed rfft of a ``_WIN_S`` (~32 ms) window, pooled into ~32
   log-spaced bands (pooling averages out noise, like a coarse mel scale), log-compressed,
   then positive spectral flux (half-wave rectified increase vs. the previous grid point,
   averaged over bands). A fixed grid keeps timing exact at any fps and lets "loop" wrap in
   audio time, so a loop whose length is not a whole number of frames does not drift.
2. Adaptive threshold (subtract a 0.5 s local mean) and robust normalisation: divide by the
   99th percentile (at least 10 % of the max and an absolute floor, so silence and faint hiss
   stay ~0), clip to [0, 1].
3. Fast attack / exponential decay (time constant ``_DECAY_S``) so a beat lasts a few frames.
4. Each video frame ``k`` (time ``k / fps``) takes the max of the curve over
   ``[t - 0.5/fps, t + 0.5/fps)``, i.e. an onset goes to the nearest frame; past the end of
   the audio "loop" maps ``t`` to ``t mod duration`` and "pad" gives 0.

Decoded audio is treated as contiguous from t = 0 (timestamps and gaps are ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import numpy as np

from engine.errors import InputError, input_error

_HOP_S = 0.008  # internal onset grid step
_WIN_S = 0.032  # analysis window (rounded to a power of two samples)
_LOOKAHEAD = 0.25  # fraction of the window after the grid time; tuned so clicks land on time
_LOG_GAIN = 10.0  # log1p(gain * |X|): compresses dynamics, keeps -80 dBFS noise near zero
_N_BANDS = 32  # log-spaced bands the spectrum is pooled into (fewer at low sample rates)
_BAND_LOW_HZ = 40.0
_FLUX_FLOOR = 0.05  # normaliser floor: flux below this is "nothing happening"
_BASELINE_S = 0.5  # window of the local mean subtracted from the flux
_DECAY_S = 0.1  # envelope decay time constant after an onset
_BATCH = 2048  # grid points per rfft batch (bounded memory)
_FRAME_CHUNK = 1 << 20  # video frames per output chunk (bounded temporaries)
_MAX_PROBE_PACKETS = 256  # check_audio gives up finding a decodable frame after this many

# Demuxers we accept. A whitelist stops playlists (hls, concat, ...) from making FFmpeg open
# other files or URLs on our behalf; names with commas are single FFmpeg demuxers.
_FORMAT_WHITELIST = ",".join(
    [
        "wav", "w64", "aiff", "caf", "au", "flac", "mp3", "aac", "ac3", "eac3", "dts", "ogg",
        "wv", "ape", "tta", "amr", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "asf",
        "mpegts", "mpeg", "flv",
    ]
)  # fmt: skip
_CONTAINER_OPTIONS = {"format_whitelist": _FORMAT_WHITELIST, "protocol_whitelist": "file"}

_UNREADABLE = "audio is not a readable audio file"


def open_audio(path: str | Path) -> tuple[Path, av.container.InputContainer, av.audio.AudioStream]:
    """Open an audio file and its best audio stream, FFmpeg held to the demuxer whitelist and
    local files; every reader of user audio opens it here. Raises :class:`InputError` with a
    one-line message for a missing or unreadable file."""
    p = Path(path)
    if not p.is_file():
        raise input_error("audio not found", p)
    try:
        container = av.open(
            str(p), "r", container_options=_CONTAINER_OPTIONS, metadata_errors="replace"
        )
    except av.error.ArgumentError:
        # EINVAL from avformat_open_input: the demuxer is not on our whitelist.
        raise input_error(_UNREADABLE, p, "unsupported container format") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise input_error(_UNREADABLE, p, e) from None
    try:
        stream = container.streams.best("audio")
    except Exception:  # best() needs a codec; fall back to the first audio stream
        stream = container.streams.audio[0] if container.streams.audio else None
    if stream is None:
        container.close()
        raise input_error(_UNREADABLE, p, "no audio stream")
    return p, container, stream


def _decoded_frames(
    container: av.container.InputContainer, stream: av.audio.AudioStream
) -> Iterator[av.AudioFrame]:
    """Decoded frames; undecodable packets are skipped so one bad packet doesn't sink a song."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue
        yield from frames


def check_audio(path: str | Path) -> float:
    """Validate an audio file and return its duration in seconds.

    Opens the file, requires an audio stream that decodes at least one frame, and reads the
    duration from stream or container metadata (decoding only when neither has one).
    Raises :class:`InputError` with a one-line message on any problem.
    """
    p, container, stream = open_audio(path)
    with container:
        try:
            decoded = False
            for n, packet in enumerate(container.demux(stream)):
                if n >= _MAX_PROBE_PACKETS:
                    break
                try:
                    if packet.decode():
                        decoded = True
                        break
                except av.error.FFmpegError:
                    continue
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise input_error(_UNREADABLE, p, e) from None
        if not decoded:
            raise input_error(_UNREADABLE, p, "no decodable audio frame")

        if stream.duration and stream.time_base and stream.duration > 0:
            return float(stream.duration * stream.time_base)
        if container.duration and container.duration > 0:
            return container.duration / av.time_base

    # No metadata (rare, e.g. some raw streams): count the samples.
    p, container, stream = open_audio(path)
    with container:
        try:
            total = sum(f.samples / f.sample_rate for f in _decoded_frames(container, stream))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise input_error(_UNREADABLE, p, e) from None
    if total <= 0:
        raise input_error(_UNREADABLE, p, "no audio samples")
    return total


def _band_matrix(win: int, sample_rate: int) -> np.ndarray:
    """[bins, bands] averaging matrix for ~log-spaced bands (like a coarse mel scale)."""
    n_bins = win // 2 + 1
    hz_per_bin = sample_rate / win
    edges_hz = np.geomspace(_BAND_LOW_HZ, sample_rate / 2, _N_BANDS + 1)
    edges = np.unique(np.clip(np.round(edges_hz / hz_per_bin).astype(int), 1, n_bins))
    edges = np.concatenate([[1], edges[edges > 1]])  # bin 0 (DC) is left out
    mat = np.zeros((n_bins, len(edges) - 1), dtype=np.float32)
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        mat[lo:hi, j] = 1.0 / (hi - lo)
    return mat


class _FluxTracker:
    """Streaming positive spectral flux on a fixed hop; holds at most one batch of samples."""

    def __init__(self, sample_rate: int) -> None:
        self.hop = max(1, round(sample_rate * _HOP_S))
        self.win = 1 << max(5, round(math.log2(sample_rate * _WIN_S)))
        self.look = int(self.win * _LOOKAHEAD)
        # Periodic Hann; grid point i analyses samples [i*hop - (win-look), i*hop + look).
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.win) / self.win)).astype(
            np.float32
        )
        self.tail = np.zeros(self.win - self.look, dtype=np.float32)
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.bands = _band_matrix(self.win, sample_rate)
        self.prev = np.zeros(self.bands.shape[1], dtype=np.float32)  # log-magnitude of silence
        self.out: list[np.ndarray] = []
        self.n_samples = 0

    def push(self, samples: np.ndarray) -> None:
        self.pending.append(samples)
        self.pending_n += len(samples)
        self.n_samples += len(samples)
        if self.pending_n >= _BATCH * self.hop:
            self._run()

    def _run(self) -> None:
        buf = np.concatenate([self.tail, *self.pending])
        self.pending, self.pending_n = [], 0
        n = (len(buf) - self.win) // self.hop + 1 if len(buf) >= self.win else 0
        for s in range(0, n, _BATCH):
            m = min(_BATCH, n - s)
            seg = buf[s * self.hop : (s + m - 1) * self.hop + self.win]
            frames = np.lib.stride_tricks.sliding_window_view(seg, self.win)[:: self.hop]
            spec = np.fft.rfft(frames * self.window, axis=1)
            power = spec.real**2 + spec.imag**2
            # Pooling bins into bands averages out noise so steady hiss has little flux.
            band_mag = np.sqrt(power @ self.bands)
            logmag = np.log1p(_LOG_GAIN * band_mag).astype(np.float32)
            diff = np.diff(logmag, axis=0, prepend=self.prev[None])
            self.out.append(np.maximum(diff, 0.0).mean(axis=1, dtype=np.float32))
            self.prev = logmag[-1]
        self.tail = buf[n * self.hop :].copy()

    def finish(self) -> np.ndarray:
        """Flush with trailing silence; return one flux value per grid point in the audio."""
        n_grid = -(-self.n_samples // self.hop)
        self.pending.append(np.zeros(self.win, dtype=np.float32))
        self._run()
        flux = np.concatenate(self.out) if self.out else np.zeros(0, np.float32)
        return flux[:n_grid]


def _onset_curve(path: str | Path, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """Decode ``path`` streaming; return (flux per grid point, grid hop, decoded samples)."""
    p, container, stream = open_audio(path)
    tracker = _FluxTracker(sample_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    with container:
        try:
            for frame in _decoded_frames(container, stream):
                for out in resampler.resample(frame):
                    tracker.push(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                tracker.push(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise input_error(_UNREADABLE, p, e) from None
    if tracker.n_samples == 0:
        raise input_error(_UNREADABLE, p, "no audio samples")
    return tracker.finish(), tracker.hop, tracker.n_samples


def _normalise(flux: np.ndarray, grid_rate: float) -> np.ndarray:
    """Scale to [0, 1] robustly, then hold peaks with an exponential decay."""
    if flux.size == 0:
        return flux.astype(np.float32)
    flux = flux.astype(np.float64)
    # Adaptive threshold: subtract the local mean so steady texture (hiss, pads) sits near 0.
    w = max(1, round(_BASELINE_S * grid_rate)) | 1
    csum = np.concatenate([[0.0], np.cumsum(np.pad(flux, w // 2, mode="edge"))])
    flux = np.maximum(flux - (csum[w:] - csum[:-w]) / w, 0.0)
    scale = max(float(np.percentile(flux, 99)), 0.1 * float(flux.max()), _FLUX_FLOOR)
    env = np.clip(flux / scale, 0.0, 1.0)
    # y[i] = max_j<=i env[j] * exp(-(i-j)*step), done in the log domain with one accumulate.
    step = 1.0 / (grid_rate * _DECAY_S)
    ramp = np.arange(env.size, dtype=np.float64) * step
    with np.errstate(divide="ignore"):
        held = np.exp(np.maximum.accumulate(np.log(env) + ramp) - ramp)
    return np.clip(held, 0.0, 1.0).astype(np.float32)


def _sliding_max(x: np.ndarray, k: int) -> np.ndarray:
    """out[i] = max(x[i:i+k]) for i in [0, len(x)-k], in O(n log k)."""
    m, w = x, 1
    while 2 * w <= k:
        m = np.maximum(m[:-w], m[w:])
        w *= 2
    n = x.size - k + 1
    return np.maximum(m[:n], m[k - w : k - w + n])


def beat_envelope(
    path: str | Path,
    fps: float,
    n_frames: int,
    mode: str = "loop",
    sample_rate: int = 16000,
) -> np.ndarray:
    """Per-video-frame onset/beat strength of an audio file: float32 ``[n_frames]`` in [0, 1].

    ``mode`` says what happens when the audio is shorter than the video: ``"loop"`` repeats
    it, ``"pad"`` gives zeros after its end. Deterministic; memory does not grow with the
    audio length beyond the small onset curve (~0.5 kB per second of audio).
    """
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive finite number, got {fps!r}")
    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 0:
        raise InputError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    if mode not in ("loop", "pad"):
        raise InputError(f"audio mode must be 'loop' or 'pad', got {mode!r}")
    if int(sample_rate) != sample_rate or not 1000 <= sample_rate <= 192000:
        raise InputError(f"sample_rate must be an integer in [1000, 192000], got {sample_rate!r}")
    n_frames, sample_rate = int(n_frames), int(sample_rate)

    check_audio(path)  # cheap, gives the usual one-line errors before decoding
    flux, hop, n_samples = _onset_curve(path, sample_rate)
    out = np.zeros(n_frames, dtype=np.float32)
    if n_frames == 0:
        return out

    grid_rate = sample_rate / hop
    env = _normalise(flux, grid_rate)
    n_grid = env.size
    k = max(1, math.ceil(grid_rate / fps))  # grid points per video frame
    half = 0.5 / fps
    duration = n_samples / sample_rate

    # Zero-padded table: index i+k is the max over grid points [i, i+k).
    padded = _sliding_max(np.concatenate([np.zeros(k), env, np.zeros(k)]), k)
    looped = None
    if mode == "loop":
        circ = np.concatenate([env, np.resize(env, k - 1)])  # wraps even if env is short
        looped = _sliding_max(circ, k)  # index i: max over grid points [i, i+k) mod n_grid

    for a in range(0, n_frames, _FRAME_CHUNK):
        t = np.arange(a, min(a + _FRAME_CHUNK, n_frames), dtype=np.float64) / fps
        if looped is None:
            first = np.ceil((t - half) * grid_rate - 1e-9).astype(np.int64) + k
            inside = first < padded.size
            vals = np.where(inside, padded[np.minimum(first, padded.size - 1)], 0.0)
        else:
            tau = np.mod(t, duration)
            first = np.ceil((tau - half) * grid_rate - 1e-9).astype(np.int64)
            vals = looped[np.mod(first, n_grid)]
            # The very first window must not wrap to the audio's end: nothing played before.
            start = t - half < 0
            vals[start] = padded[first[start] + k]
        out[a : a + t.size] = vals
    return out
