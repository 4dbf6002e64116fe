"""Encoding in chunks (stitcher.chunks): the segment workers encode their own frames, the
stitcher only the blends, and the outputs are the same bytes whoever encoded what."""

import dataclasses
import random
from fractions import Fraction

import av
import numpy as np
import pytest

from stitcher.blend import flow_blend
from stitcher.carry import CarryFile, resume_point
from stitcher.chunks import EncodeSettings, LosslessFrames, blend_overlap, encode_chunk, package_segment
from stitcher.encoder import EncodedVideo
from stitcher.outputs import HLS_PLAYLIST, OutputConfig, open_sinks
from stitcher.probe import ProbePlan, TemporalProbe, measure_steps
from stitcher.stitch import Stitcher
from tests.conftest import make_spec, make_timeline
from tests.test_stitch import _render_segments

PROMPT = "a blue square drifting right at sunset"


class PacketSink:
    """Keeps every encoded packet it gets, by frame index."""

    def __init__(self):
        self.packets: dict[int, bytes] = {}
        self.keyframes: set[int] = set()

    def write_encoded(self, video: EncodedVideo):
        for packet in video.packets(Fraction(1, 30)):
            assert int(packet.pts) not in self.packets
            self.packets[int(packet.pts)] = bytes(packet)
            if packet.is_keyframe:
                self.keyframes.add(int(packet.pts))

    def close(self):
        pass



def _setup(tmp_path, duration=16, **overrides):
    spec = make_spec(tmp_path, duration=duration, prompt=PROMPT, **overrides)
    timeline = make_timeline(spec)
    outputs = OutputConfig(spec.fps, spec.width, spec.height, mp4=tmp_path / "v.mp4",
                           hls=tmp_path / "hls", hls_segment_seconds=1.0)
    return spec, timeline, outputs


def _package(timeline, segments, encoding):
    out = []
    for k, frame_start, frames, tail in segments:
        head = timeline.shared_tail(k - 1) if k else 0
        out.append(package_segment(k, frame_start, frames, head, tail, encoding, 0.0))
    return out


def test_a_chunk_is_closed_gops_on_the_grid_plus_one_at_its_start():
    settings = EncodeSettings(10, 64, 64, 23, "veryfast", keyint=10)
    frames = np.random.default_rng(0).integers(0, 255, (27, 64, 64, 3), np.uint8)
    video = encode_chunk(settings, frames, start=13)
    assert (video.start, video.frames, video.stop) == (13, 27, 40)
    assert sorted(video.pts) == list(range(13, 40))
    assert sorted(video.pts[video.keyframe]) == [13, 20, 30]
    # Any grid point cuts it into pieces that are the chunks encoded from there.
    tail = video.from_frame(30)
    again = encode_chunk(settings, frames[30 - 13:], start=30)
    assert tail.data == again.data and list(tail.pts) == list(again.pts)
    assert EncodedVideo.join([video.from_frame(13), EncodedVideo.empty(40)]).data == video.data
    with pytest.raises(ValueError, match="does not start a GOP"):
        video.from_frame(25)


def test_outputs_are_the_same_bytes_whether_workers_or_the_stitcher_encode(tmp_path):
    spec, timeline, outputs = _setup(tmp_path)
    segments = _render_segments(timeline)
    encoding = outputs.encoding
    files = {}
    for name in ("stitcher", "workers"):
        cfg = OutputConfig(spec.fps, spec.width, spec.height, mp4=tmp_path / f"{name}.mp4",
                           hls=tmp_path / f"{name}_hls", hls_segment_seconds=1.0)
        stitcher = Stitcher(open_sinks(cfg), encoding=encoding)
        if name == "stitcher":
            for segment in segments:
                stitcher.add(*segment)
        else:
            packaged = _package(timeline, segments, encoding)
            random.Random(1).shuffle(packaged)
            for segment in packaged:
                stitcher.add_packaged(segment)
        assert stitcher.close() == spec.total_frames
        files[name] = cfg
    a, b = files["stitcher"], files["workers"]
    assert a.mp4.read_bytes() == b.mp4.read_bytes()
    seg_a = sorted(p.name for p in a.hls.glob("*.ts"))
    assert seg_a == sorted(p.name for p in b.hls.glob("*.ts"))
    assert all((a.hls / n).read_bytes() == (b.hls / n).read_bytes() for n in seg_a)
    # HLS segments still cut on the grid only, and each starts with its IDR.
    playlist = (b.hls / HLS_PLAYLIST).read_text()
    durations = [float(line.split(":")[1].rstrip(",")) for line in playlist.splitlines()
                 if line.startswith("#EXTINF")]
    assert durations[:-1] == [1.0] * (len(durations) - 1) and len(durations) == 16
    for name in seg_a:
        with av.open(str(b.hls / name)) as container:
            first = next(container.demux(video=0))
            assert first.is_keyframe
    # The decoded video has every frame, IDRs on the grid and at the chunk starts only.
    with av.open(str(b.mp4)) as container:
        decoded = list(container.decode(video=0))
    frames = [f.to_ndarray(format="rgb24") for f in decoded]
    keys = {i for i, f in enumerate(decoded) if f.key_frame}
    assert len(frames) == spec.total_frames
    grid = set(range(0, spec.total_frames, encoding.keyint))
    chunk_starts = {timeline.frame_start(k) for k in range(1, timeline.num_segments)} | {
        timeline.frame_start(k) + timeline.shared_tail(k - 1)
        for k in range(1, timeline.num_segments)}
    assert grid <= keys <= grid | chunk_starts
    # Close to the raw frames (a lossy encode of them, not something else).
    raw = Stitcher([_Frames()])
    for segment in segments:
        raw.add(*segment)
    assert np.abs(np.stack(frames).astype(int) - raw.sinks[0].frames).mean() < 3


class _Frames:
    def __init__(self):
        self.chunks = []

    def write(self, frames):
        self.chunks.append(frames)

    def close(self):
        pass

    @property
    def frames(self):
        return np.concatenate(self.chunks).astype(int)


def test_packaged_segments_ship_far_fewer_bytes_than_raw_frames(tmp_path):
    spec, timeline, outputs = _setup(tmp_path, width=128, height=128, fps=30, overlap=16,
                                     duration=10)
    segments = _render_segments(timeline)
    packaged = _package(timeline, segments, outputs.encoding)
    raw = sum(s[2].nbytes for s in segments)
    shipped = sum(p.nbytes for p in packaged)
    assert shipped * 5 < raw


def test_the_probe_reads_the_same_figures_from_measured_bodies(tmp_path):
    spec, timeline, outputs = _setup(tmp_path)
    segments = _render_segments(timeline)
    plan = ProbePlan(spec.fps, spec.segment_seconds * spec.fps, spec.overlap, spec.total_frames)
    results = []
    for packaged in (False, True):
        stitcher = Stitcher([PacketSink()], probe=plan, encoding=outputs.encoding)
        seams = []
        items = _package(timeline, segments, outputs.encoding) if packaged else segments
        for item in items:
            stats = stitcher.add_packaged(item) if packaged else stitcher.add(*item)
            seams += stats.seams
        results.append((stats.steps, seams))
    assert results[0] == results[1]
    assert len(results[0][1]) == timeline.num_segments - 1
    # And a probe started inside measured frames (a resumed run) reads from its start on.
    frames = np.concatenate([s[2] for s in segments])[:40]
    seen, late = TemporalProbe(plan, 7), TemporalProbe(plan, 7)
    seen.observe(7, frames[7:])
    late.observe_measured(0, measure_steps(frames))
    assert late.totals == seen.totals and late.totals.other_count == 40 - 7 - 1 - 3


def test_a_resume_from_an_encoded_carry_writes_the_uninterrupted_packets(tmp_path):
    spec, timeline, outputs = _setup(tmp_path)
    segments = _render_segments(timeline)
    encoding = outputs.encoding
    packaged = _package(timeline, segments, encoding)
    whole_sink = PacketSink()
    whole = Stitcher([whole_sink], encoding=encoding)
    for segment in packaged:
        whole.add_packaged(segment)
    gop = encoding.keyint
    plan = ProbePlan(spec.fps, spec.segment_seconds * spec.fps, spec.overlap, spec.total_frames)
    carry = CarryFile(tmp_path, gop)
    stitcher = Stitcher([PacketSink()], carry=carry, encoding=encoding)
    resumed_from = set()
    for k in range(len(segments) - 1):
        stitcher.add_packaged(packaged[k])
        saved = carry.load()
        assert saved is not None and saved.segment == k
        assert isinstance(saved.frames, EncodedVideo)
        reach = timeline.frame_start(k + 2) if k + 2 < timeline.num_segments else spec.total_frames
        first = saved.frame_start + (-saved.frame_start) % gop
        for written in range(first, reach, gop):
            start = resume_point(timeline, written, saved)
            assert start.segment == k + 1, (k, written)
            sink = PacketSink()
            resumed = Stitcher([sink], start=start, encoding=encoding, probe=plan)
            resumed.add_packaged(packaged[k + 1])
            assert sink.packets == {f: whole_sink.packets[f] for f in sink.packets}
            assert min(sink.packets) == written and max(sink.packets) == reach - 1
            resumed_from.add(written)
    assert len(resumed_from) > 5
    stitcher.add_packaged(packaged[-1])
    assert carry.load() is None


def _deliveries(packaged, encoding, seed):
    """What the Ray executor gives the stitcher, in a random finishing order: each segment,
    with the overlaps whose second side it completes (blended as a worker blends them)."""
    order = list(range(len(packaged)))
    random.Random(seed).shuffle(order)
    done, calls = set(), []
    for k in order:
        overlaps = [blend_overlap(flow_blend, packaged[j].tail, packaged[j + 1], encoding)
                    for j in (k - 1, k) if {j, j + 1} <= done | {k} and len(packaged[j].tail)]
        done.add(k)
        calls.append((packaged[k], overlaps))
    return calls


def test_overlaps_blended_by_the_workers_give_the_same_bytes_and_figures(tmp_path):
    spec, timeline, outputs = _setup(tmp_path)
    segments = _render_segments(timeline)
    encoding = outputs.encoding
    packaged = _package(timeline, segments, encoding)
    plan = ProbePlan(spec.fps, spec.segment_seconds * spec.fps, spec.overlap, spec.total_frames)
    here_sink, elsewhere_sink = PacketSink(), PacketSink()
    here = Stitcher([here_sink], probe=plan, encoding=encoding)
    elsewhere = Stitcher([elsewhere_sink], probe=plan, encoding=encoding, blends_elsewhere=True)
    for segment in packaged:
        here_stats = here.add_packaged(segment)
    seams, emitted, worker_seconds = [], [], 0.0
    for segment, overlaps in _deliveries(packaged, encoding, seed=3):
        stats = elsewhere.add_packaged(segment, overlaps)
        seams += stats.seams
        emitted += stats.emitted
        worker_seconds += stats.worker_blend_seconds
    assert emitted == list(range(timeline.num_segments))
    assert elsewhere_sink.packets == here_sink.packets
    assert len(here_sink.packets) == spec.total_frames
    assert stats.steps == here_stats.steps and len(seams) == timeline.num_segments - 1
    assert worker_seconds > 0


def test_a_segment_waits_for_the_overlap_blended_elsewhere(tmp_path):
    spec, timeline, outputs = _setup(tmp_path)
    encoding = outputs.encoding
    packaged = _package(timeline, _render_segments(timeline), encoding)
    stitcher = Stitcher([PacketSink()], encoding=encoding, blends_elsewhere=True)
    assert stitcher.add_packaged(packaged[0]).emitted == (0,)
    assert stitcher.add_packaged(packaged[1]).emitted == ()  # its head is blended elsewhere
    overlap = blend_overlap(flow_blend, packaged[0].tail, packaged[1], encoding)
    wrong = blend_overlap(flow_blend, packaged[1].tail, packaged[2], encoding)
    with pytest.raises(ValueError, match="does not match"):
        stitcher.add_packaged(packaged[2], [dataclasses.replace(wrong, index=1)])
    stitcher = Stitcher([PacketSink()], encoding=encoding, blends_elsewhere=True)
    stitcher.add_packaged(packaged[1])
    assert stitcher.add_packaged(packaged[0], [overlap]).emitted == (0, 1)


def test_a_resume_blends_its_first_overlap_with_the_carried_tail(tmp_path):
    """Workers blend the overlaps; the carry keeps the last tail as the worker packed it, and
    the resumed stitcher blends that one itself: the uninterrupted bytes."""
    spec, timeline, outputs = _setup(tmp_path)
    encoding = outputs.encoding
    packaged = _package(timeline, _render_segments(timeline), encoding)
    whole_sink = PacketSink()
    whole = Stitcher([whole_sink], encoding=encoding)
    for segment in packaged:
        whole.add_packaged(segment)
    carry = CarryFile(tmp_path, encoding.keyint)
    first = Stitcher([PacketSink()], carry=carry, encoding=encoding, blends_elsewhere=True)
    for segment, overlaps in _deliveries(packaged[:3], encoding, seed=4):
        first.add_packaged(segment, overlaps)
    saved = carry.load()
    assert saved.segment == 2 and isinstance(saved.held, LosslessFrames)
    assert np.array_equal(saved.held.unpack(), packaged[2].tail.unpack())
    start = resume_point(timeline, saved.frame_start + (-saved.frame_start) % encoding.keyint,
                         saved)
    sink = PacketSink()
    resumed = Stitcher([sink], start=start, encoding=encoding, blends_elsewhere=True)
    for segment, overlaps in _deliveries(packaged[3:], encoding, seed=5):
        if segment.index == 3:  # the executor blends nothing before the stitcher's first
            overlaps = [o for o in overlaps if o.index != 3]
        resumed.add_packaged(segment, overlaps)
    assert resumed.close() == spec.total_frames
    assert sink.packets == {f: whole_sink.packets[f] for f in sink.packets}
    assert max(sink.packets) == spec.total_frames - 1


def test_overlap_frames_travel_without_loss():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (6, 48, 80, 3), np.uint8)
    frames[2:] = frames[1]  # still frames, then a change: inter prediction at work
    frames[4, 5:9, 7:30] = (255, 0, 3)
    packed = LosslessFrames.pack(frames)
    assert np.array_equal(packed.unpack(), frames)
    assert packed.nbytes < frames.nbytes
    empty = LosslessFrames.pack(frames[:0])
    assert len(empty) == 0 and empty.unpack().shape == (0, 48, 80, 3)


def test_a_carry_of_raw_frames_resumes_into_an_encoding_stitcher(tmp_path):
    """A carry kept by an lvp that encoded in the stitcher alone (raw frames) still resumes."""
    spec, timeline, outputs = _setup(tmp_path)
    segments = _render_segments(timeline)
    carry = CarryFile(tmp_path, outputs.encoding.keyint)
    raw = Stitcher([_Frames()], carry=carry)
    for segment in segments[:2]:
        raw.add(*segment)
    saved = carry.load()
    assert isinstance(saved.frames, np.ndarray)
    start = resume_point(timeline, saved.frame_start + (-saved.frame_start) % spec.fps, saved)
    sink = PacketSink()
    resumed = Stitcher([sink], start=start, encoding=outputs.encoding, carry=carry)
    for segment in segments[2:]:
        resumed.add(*segment)
    assert sorted(sink.packets) == list(range(start.written, spec.total_frames))
