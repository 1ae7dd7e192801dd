"""Audio front end "logmel-v1": an audio file -> (L <= max_frames, 56) float32 frame features, numpy only.

Pipeline: soundfile (or, for a video container / a file soundfile cannot read, its first audio track
decoded with PyAV) -> float32 -> mono (mean of channels) -> 16 kHz (numpy polyphase resampler, the
same windowed-sinc design as scipy.signal.resample_poly, so scipy is not needed on the device) ->
25 ms Hamming frames every 10 ms -> per frame: 40 log-mel bands, MFCC 1..13 (DCT-II of the log-mels),
log energy, pitch in units of 100 Hz (autocorrelation; 0 when unvoiced) and voicing strength in [0, 1]
-> frames mean-pooled into at most `max_frames` consecutive segments so clip length does not blow up
the sequence length. Column order: [log-mel 0:40 | MFCC 40:53 | log energy, pitch, voicing 53:56].
"""
from __future__ import annotations

import importlib.util
import os
import time
from contextlib import contextmanager
from math import gcd
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import MEDIA_FIX, InputError, one_line, require
from ..spec import check_finite
from . import media_file

NAME = "logmel-v1"
SAMPLE_RATE = 16000
WIN = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 40
N_MFCC = 13
F0_RANGE = (60.0, 400.0)  # Hz searched by the pitch tracker (speech)
VOICING_MIN = 0.3  # normalised autocorrelation below this = unvoiced (pitch 0)
OCTAVE_TOLERANCE = 0.85  # a shorter-lag peak this close to the best one wins (sub-octave guard)
DIM = N_MELS + N_MFCC + 3
DEFAULT_MAX_FRAMES = 50
CHUNK_FRAMES = 6000  # frames (60 s) analysed at once, so long recordings need tens of MB, not GB
EPS = 1e-10
VIDEO_EXTS = (".mp4", ".avi", ".flv", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")  # read_audio decodes
# these with PyAV (their audio track); featurize and the runtime use the same tuple to recognise video files
AV_FIX = f"{MEDIA_FIX} (or pip install av)"


def too_short(samples: int) -> str | None:
    """Why audio of `samples` samples at SAMPLE_RATE gives no frame (None if it gives one): the front end's rule, which
    the REST service also applies to an upload's length from its header, before the upload joins a batch."""
    if samples >= WIN:
        return None
    return (f"audio is {samples / SAMPLE_RATE * 1000:.1f} ms long; expected at least {WIN * 1000 // SAMPLE_RATE} ms "
            "(one frame)")


def resample(x: np.ndarray, src_rate: int, dst_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a 1-D signal by up/down = dst/src (reduced): the Kaiser(5.0) windowed-sinc
    low-pass with 10 zero crossings per side that scipy.signal.resample_poly uses (outputs agree to
    ~1e-7), output length ceil(len(x) * up / down).

    Output samples n = r, r + up, r + 2 up, ... share one set of filter taps (phase r) and read input
    windows `down` samples apart, so each phase is one strided matrix-vector product.
    """
    if src_rate == dst_rate:
        return x.astype(np.float32, copy=False)
    g = gcd(int(src_rate), int(dst_rate))
    up, down = int(dst_rate) // g, int(src_rate) // g
    max_rate = max(up, down)
    half = 10 * max_rate
    t = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.sinc(t / max_rate) * np.kaiser(2 * half + 1, 5.0)  # (2*half+1,) low-pass at the lower Nyquist
    taps *= up / taps.sum()  # unit DC gain after zero-stuffing by `up`
    n_out = -(-len(x) * up // down)
    k = (2 * half) // up + 2  # input samples under the filter, upper bound
    pad = k + 1
    xp = np.concatenate([np.zeros(pad), x.astype(np.float64), np.zeros(pad + k + down)])
    windows = np.lib.stride_tricks.sliding_window_view(xp, k)  # (len(xp) - k + 1, k), a view
    out = np.empty(n_out, dtype=np.float64)
    for r in range(min(up, n_out)):
        pos = r * down  # upsampled-domain time of output r
        first = -((half - pos) // up)  # ceil((pos - half) / up): first input sample under the filter
        tap = pos - (first + np.arange(k)) * up + half  # (k,) filter tap per input sample
        weights = np.where((tap >= 0) & (tap <= 2 * half), taps[np.clip(tap, 0, 2 * half)], 0.0)  # (k,)
        count = len(range(r, n_out, up))
        out[r::up] = windows[first + pad::down][:count] @ weights  # (count,)
    return out.astype(np.float32)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters spanning 0 Hz .. rate / 2."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2))  # (n_mels + 2,) Hz
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)  # (F,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, F)


def dct_matrix(n_out: int = N_MFCC, n_in: int = N_MELS) -> np.ndarray:
    """(n_out, n_in) orthonormal DCT-II rows 1..n_out (MFCC from log-mel; c0 is left out because it
    only rescales the mean log-mel, which the log-energy column already carries, and dwarfs the rest)."""
    k = np.arange(1, n_out + 1)[:, None]
    n = np.arange(n_in)[None, :]
    return np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)


def pool_frames(frames: np.ndarray, max_frames: int) -> np.ndarray:
    """(T, d) -> (min(T, max_frames), d): means over consecutive, near-equal windows of frames."""
    if len(frames) <= max_frames:
        return frames
    bounds = np.linspace(0, len(frames), max_frames + 1).round().astype(np.int64)  # (max_frames + 1,)
    sums = np.add.reduceat(frames, bounds[:-1], axis=0)  # (max_frames, d); windows are never empty
    return sums / np.diff(bounds)[:, None]


class AudioFrontEnd:
    """`__call__(path) -> (L <= max_frames, 56) float32`; see the module docstring for the columns.

    `timings` holds the seconds each stage took in the latest call: read, resample, features.
    Any readable rate/channel layout is accepted; bad input raises a one-line InputError.
    """

    name = NAME
    dim = DIM

    def __init__(self, max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        if max_frames < 1:
            raise InputError(f"audio max_frames must be >= 1; got {max_frames}")
        self.max_frames = int(max_frames)
        self.timings: dict[str, float] = {}
        self._mel = mel_filterbank().T.astype(np.float32)  # (F, n_mels)
        self._dct = dct_matrix().T.astype(np.float32)  # (n_mels, n_mfcc)
        self._window = np.hamming(WIN).astype(np.float32)  # (WIN,)

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        t0 = time.perf_counter()
        samples, rate = read_audio(path)
        read_s = time.perf_counter() - t0
        feats = self.extract(samples, rate, source=str(path))
        self.timings["read"] = read_s
        return feats

    def extract(self, samples: np.ndarray, rate: int, source: str = "audio") -> np.ndarray:
        """Features of an in-memory signal: (T,) mono or (T, channels) samples at `rate` Hz."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] == 0):  # (T, 0): no channel, a mix-down of NaN
            raise InputError(f"{source}: samples have shape {x.shape}; expected (T,) or (T, channels), channels >= 1")
        check_finite(f"{source}: audio samples", x, ("sample", "channel")[:x.ndim])  # counted before the mix-down
        if x.ndim == 2:
            x = x.mean(axis=1)  # (T,) mono
        if rate < 1:
            raise InputError(f"{source}: sample rate {rate}; expected a positive rate in Hz")
        t0 = time.perf_counter()
        x = resample(x, int(rate))
        t1 = time.perf_counter()
        short = too_short(len(x))
        if short:
            raise InputError(f"{source}: {short}")
        n = 1 + (len(x) - WIN) // HOP
        frames = np.concatenate([self.frame_features(x[i * HOP:(min(i + CHUNK_FRAMES, n) - 1) * HOP + WIN])
                                 for i in range(0, n, CHUNK_FRAMES)])  # (n, DIM), bounded memory per chunk
        feats = pool_frames(frames, self.max_frames).astype(np.float32)  # (L, DIM)
        self.timings = {"read": 0.0, "resample": t1 - t0, "features": time.perf_counter() - t1}
        return feats

    def frame_features(self, x: np.ndarray) -> np.ndarray:
        """(T,) 16 kHz samples -> (frames, DIM) per-frame features (no pooling)."""
        n = 1 + (len(x) - WIN) // HOP
        frames = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP][:n]  # (n, WIN)
        frames = frames - frames.mean(axis=1, keepdims=True)  # remove DC per frame
        energy = np.log((frames ** 2).sum(axis=1) + EPS)  # (n,)
        spec = np.abs(np.fft.rfft(frames * self._window, n=N_FFT, axis=1)) ** 2  # (n, F) power
        logmel = np.log(spec.astype(np.float32) @ self._mel + EPS)  # (n, n_mels)
        mfcc = logmel @ self._dct  # (n, n_mfcc)
        pitch, voicing = autocorr_pitch(frames)  # (n,), (n,)
        return np.concatenate([logmel, mfcc, energy[:, None], pitch[:, None] / 100.0, voicing[:, None]], axis=1)


def autocorr_pitch(frames: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame f0 (Hz, 0 = unvoiced) and voicing strength = peak normalised autocorrelation in F0_RANGE.

    The autocorrelation is unbiased-corrected (divided by the overlap) so long lags are not penalised;
    the shortest-lag peak within OCTAVE_TOLERANCE of the best is taken, which avoids picking f0 / 2.
    """
    n_fft = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    spec = np.fft.rfft(frames, n=n_fft, axis=1)  # (n, n_fft/2+1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n=n_fft, axis=1)[:, :frames.shape[1]]  # (n, WIN) lags 0..WIN-1
    lo, hi = int(rate / F0_RANGE[1]), min(int(rate / F0_RANGE[0]), frames.shape[1] - 1)
    overlap = frames.shape[1] - np.arange(lo, hi + 1)  # (lags,)
    norm = ac[:, lo:hi + 1] / overlap * frames.shape[1] / np.maximum(ac[:, :1], EPS)  # (n, lags)
    peak = np.zeros_like(norm, dtype=bool)  # (n, lags) local maxima
    peak[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
    strong = peak & (norm >= OCTAVE_TOLERANCE * norm.max(axis=1, keepdims=True))
    best = np.where(strong.any(axis=1), strong.argmax(axis=1), norm.argmax(axis=1))  # (n,) shortest strong lag
    voicing = np.clip(norm[np.arange(len(best)), best], 0.0, 1.0)  # (n,)
    pitch = np.where(voicing >= VOICING_MIN, rate / (lo + best), 0.0)  # (n,) Hz
    return pitch, voicing


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(samples (T,) or (T, channels) float32, sample rate): soundfile for audio files; the first audio track
    via PyAV for video containers (VIDEO_EXTS) and for files soundfile cannot read. Bad files -> InputError."""
    p = media_file(path, "audio file", "a WAV/FLAC/OGG/MP3 file, or a video with an audio track")
    if p.suffix.lower() in VIDEO_EXTS:
        samples, rate = decode_audio_track(p)
    else:
        sf = require("soundfile", "reading audio files", MEDIA_FIX)
        try:
            samples, rate = sf.read(str(p), dtype="float32", always_2d=False)
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError by format
            unreadable_without_av(p, exc)
            samples, rate = decode_audio_track(p)  # e.g. .m4a / .aac / .opus, which libsndfile lacks
    if samples.size == 0:
        raise InputError(f"audio file {p} has no samples; expected at least 25 ms of audio")
    return samples, int(rate)


def unreadable_without_av(path: Path, exc: Exception) -> None:
    """soundfile's error `exc` on `path` as an InputError when PyAV is not installed, the one reader left: the file
    is unreadable, as read_audio and media_seconds both rule, so featurize leaves a corrupt .wav out with a warning
    (measuring it asked for PyAV and stopped the run). With PyAV it returns, and the caller tries PyAV. A file
    soundfile reads but PyAV is needed for (audio in a video, a FLAC of unknown length) still names the fix."""
    if importlib.util.find_spec("av") is None:
        raise InputError(f"cannot read audio {path}: {one_line(exc)}; expected a WAV/FLAC/OGG/MP3 file") from None


@contextmanager
def open_container(path: str | os.PathLike, what: str = "audio", expected: str = "a media file with an audio track",
                   purpose: str = "reading audio from video containers") -> Iterator[tuple[ModuleType, Any]]:
    """(the av module, a PyAV container opened on a media file); FFmpeg errors inside the block -> InputError naming
    `what` could not be read and the `expected` file."""
    av = require("av", purpose, AV_FIX)
    try:
        with av.open(str(path)) as container:
            yield av, container
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # raised by open, demux or decode
        # FFmpegError's str() is "[Errno 1094995529] Invalid data found when processing input: '<path>'":
        # keep the reason
        raise InputError(f"cannot read {what} {path}: {one_line(getattr(exc, 'strerror', None) or exc)}; expected "
                         f"{expected}") from None


def decode_audio_track(path: Path) -> tuple[np.ndarray, int]:
    """(samples (T,) or (T, channels) float32, the track's sample rate) of the first audio stream of a media
    file, decoded with PyAV; no audio track or an undecodable file -> InputError."""
    chunks = []
    with open_container(path) as (av, container):
        if not container.streams.audio:
            raise no_audio_track(path)
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")  # any sample format -> planar float32
        for frame in container.decode(stream):
            chunks += [f.to_ndarray() for f in to_float.resample(frame)]  # each (channels, n)
        chunks += [f.to_ndarray() for f in to_float.resample(None)]  # flush
        rate = stream.codec_context.sample_rate
    samples = np.concatenate(chunks, axis=1).T if chunks else np.zeros((0, 1), np.float32)  # (T, channels)
    return (samples[:, 0] if samples.shape[1] == 1 else samples).astype(np.float32, copy=False), int(rate)


def no_audio_track(path: str | os.PathLike) -> InputError:
    """The one line for a container asked for audio that holds none (decoding it, or measuring it before the
    duration gate): its format, for the REST service, which drops the path, and where else the audio can come from."""
    kind = Path(path).suffix[1:].upper()
    return InputError(f"audio {path}{f' ({kind})' if kind else ''} has no audio track; expected audio, or a video "
                      "with an audio track (or give the audio as a separate file: predict --audio; featurize: a "
                      ".wav/.flac/.mp3 with the same stem)")


def has_audio_track(path: str | os.PathLike) -> bool:
    """Whether a media file has an audio stream: reads the container header only, decodes nothing (the
    runtime asks before its gate, so a skipped audio track costs no decoding). Unreadable -> InputError."""
    with open_container(path) as (_, container):
        return bool(container.streams.audio)


def media_duration(path: str | os.PathLike, stop_after: float = float("inf"), need_audio: bool = False) -> float:
    """Seconds a media file lasts, for files whose header does not say (browser-recorded WebM, a FLAC written as a
    stream, audio inside a video container): the container's duration, else the end of its last packet, read by
    demuxing without decoding and stopping once past `stop_after`. `need_audio`: a file without an audio track is
    an InputError, checked on the same open (a container is opened once per check). Unreadable -> InputError; no
    PyAV -> the fix."""
    what, expected = ("audio", "a media file with an audio track") if need_audio else ("media", "a media file")
    with open_container(path, what, expected, "measuring media without a duration in the header") as (av, container):
        if need_audio and not container.streams.audio:
            raise no_audio_track(path)
        if container.duration and container.duration > 0:
            return container.duration / av.time_base
        return packets_end(container.demux(), stop_after)


def packets_end(packets: Iterable[Any], stop_after: float = float("inf")) -> float:
    """Seconds at the end of the last of demuxed `packets` (their timestamps, nothing decoded), stopping once past
    `stop_after`: media_duration's measure of a container, and the REST service's of an upload's audio track."""
    end = 0.0
    for packet in packets:
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if end > stop_after:
                break
    return end
