"""Audio front end "logmel-v1": real CREMA-D clips, the numpy resampler, and every bad-input path."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from conftest import DATA_ROOT, one_line_error
from edge_msa.errors import InputError, MissingDependencyError
from edge_msa.features import MAX_MEDIA_SECONDS, front_end, refuse_long_media
from edge_msa.features.audio import (DIM, SAMPLE_RATE, AudioFrontEnd, has_audio_track, pool_frames, read_audio,
                                    resample)

sf = pytest.importorskip("soundfile", reason="soundfile is a core dependency of the audio front end")
CREMAD = DATA_ROOT / "raw_av" / "cremad"
needs_cremad = pytest.mark.skipif(not (CREMAD / "resampled").is_dir(), reason=f"CREMA-D clips not found at {CREMAD}")


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


def test_registry_builds_audio_front_end():
    fe = front_end("logmel-v1", max_frames=7)
    assert isinstance(fe, AudioFrontEnd) and fe.dim == DIM == 56 and fe.max_frames == 7


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_keeps_frequency_and_duration(rate):
    y = resample(tone(440.0, rate), rate)
    assert y.dtype == np.float32 and len(y) == SAMPLE_RATE
    assert abs(dominant_freq(y, SAMPLE_RATE) - 440.0) < 2.0
    assert abs(np.sqrt(np.mean(y[1000:-1000] ** 2)) - 0.3 / np.sqrt(2)) < 0.01  # unit gain


def test_resample_removes_content_above_new_nyquist():
    y = resample(tone(12000.0, 44100), 44100)  # 12 kHz cannot exist at 16 kHz
    assert np.sqrt(np.mean(y ** 2)) < 0.01


def test_resample_matches_scipy_resample_poly():
    signal = pytest.importorskip("scipy.signal", reason="scipy is only the reference here, not a dependency")
    x = np.random.default_rng(0).normal(size=9001).astype(np.float32)
    for rate, up, down in ((44100, 160, 441), (8000, 2, 1), (11025, 640, 441)):
        ref = signal.resample_poly(x.astype(np.float64), up, down)
        ours = resample(x, rate)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_pool_frames_means_consecutive_windows():
    frames = np.arange(10, dtype=np.float64)[:, None].repeat(2, axis=1)  # (10, 2)
    pooled = pool_frames(frames, 4)
    assert pooled.shape == (4, 2)
    assert pooled[:, 0].tolist() == [0.5, 3.0, 6.0, 8.5]  # windows [0:2] [2:5] [5:8] [8:10]
    assert pool_frames(frames, 20) is frames


def test_pitch_column_tracks_a_voiced_tone():
    fe = AudioFrontEnd()
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    buzz = (0.3 * np.sign(np.sin(2 * np.pi * 150.0 * t))).astype(np.float32)  # harmonic-rich, f0 150 Hz
    frames = fe.frame_features(buzz)
    assert frames.shape == (1 + (SAMPLE_RATE - 400) // 160, DIM)
    assert abs(np.median(frames[:, 54]) * 100 - 150.0) < 3.0  # pitch / 100 Hz
    assert np.median(frames[:, 55]) > 0.9  # voicing
    noise = np.random.default_rng(0).normal(scale=0.1, size=SAMPLE_RATE).astype(np.float32)
    assert np.median(fe.frame_features(noise)[:, 55]) < 0.3  # noise is unvoiced


def test_other_rates_and_stereo_files_are_resampled_and_downmixed(tmp_path):
    fe = AudioFrontEnd()
    for rate in (8000, 44100):
        path = tmp_path / f"tone_{rate}.wav"
        sf.write(path, tone(300.0, rate, 1.0), rate)
        feats = fe(path)
        assert feats.shape == (50, DIM) and feats.dtype == np.float32 and np.isfinite(feats).all()
        assert fe.timings["resample"] > 0.0 and set(fe.timings) == {"read", "resample", "features"}
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    x = tone(200.0, SAMPLE_RATE, 0.3)
    sf.write(mono, x, SAMPLE_RATE, subtype="FLOAT")
    sf.write(stereo, np.stack([x, x], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(fe(stereo), fe(mono), atol=1e-5)


def test_short_clip_keeps_every_frame():
    feats = AudioFrontEnd(max_frames=50).extract(tone(200.0, SAMPLE_RATE, 0.1), SAMPLE_RATE)  # 100 ms
    assert feats.shape == (1 + (1600 - 400) // 160, DIM)


@needs_cremad
@pytest.mark.slow
def test_real_cremad_wavs_give_finite_distinct_features():
    fe = AudioFrontEnd()
    feats = {emo: fe(CREMAD / "resampled" / f"1001_DFA_{emo}_XX.wav") for emo in ("HAP", "SAD", "NEU")}
    for x in feats.values():
        assert x.shape == (50, DIM) and x.dtype == np.float32 and np.isfinite(x).all()
    assert fe.timings["resample"] < 1e-3  # already 16 kHz: nothing to do
    assert np.abs(feats["HAP"] - feats["SAD"]).mean() > 0.5
    voiced = feats["HAP"][:, 55] > 0.5
    assert voiced.sum() > 10 and 0.7 < np.median(feats["HAP"][voiced, 54]) < 3.0  # f0 70..300 Hz


@needs_cremad
@pytest.mark.slow
def test_real_44k_mp3_matches_its_16k_wav():
    """The 44.1 kHz MP3 through our resampler vs the upstream 16 kHz WAV of the same clip."""
    fe = AudioFrontEnd()
    try:
        from_mp3 = fe(CREMAD / "data" / "1002_DFA_HAP_XX.mp3")
    except InputError as exc:
        pytest.skip(f"this libsndfile cannot decode MP3: {exc}")
    from_wav = fe(CREMAD / "resampled" / "1002_DFA_HAP_XX.wav")
    spectrum_mp3, spectrum_wav = from_mp3[:, :40].mean(axis=0), from_wav[:, :40].mean(axis=0)  # mean log-mel
    assert np.corrcoef(spectrum_mp3, spectrum_wav)[0, 1] > 0.99
    assert np.abs(spectrum_mp3 - spectrum_wav).max() < 1.0


def test_bad_audio_inputs_raise_one_line_input_errors(tmp_path):
    fe = AudioFrontEnd()
    assert f"audio file not found: {tmp_path / 'nope.wav'}; expected a WAV/FLAC" in one_line_error(
        lambda: fe(tmp_path / "nope.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")  # was FFmpeg's "[Errno 1094995529] Invalid data found ..."
    assert "empty.wav is empty (0 bytes); expected a WAV" in one_line_error(lambda: fe(tmp_path / "empty.wav"))
    (tmp_path / "folder.wav").mkdir()  # was "audio file not found"
    assert "folder.wav is a folder; expected a WAV" in one_line_error(lambda: fe(tmp_path / "folder.wav"))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(2000))
    assert "cannot read audio" in one_line_error(lambda: fe(tmp_path / "corrupt.wav"))
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    assert "no samples" in one_line_error(lambda: fe(tmp_path / "zero.wav"))
    sf.write(tmp_path / "short.wav", tone(200.0, SAMPLE_RATE, 0.01), SAMPLE_RATE)  # 10 ms < one 25 ms frame
    assert "at least 25 ms" in one_line_error(lambda: fe(tmp_path / "short.wav"))
    bad = tone(200.0, SAMPLE_RATE, 0.2)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SAMPLE_RATE, subtype="FLOAT")
    assert one_line_error(lambda: fe(tmp_path / "nan.wav")) == (
        f"{tmp_path / 'nan.wav'}: audio samples hold 1 of 3200 values that are not finite (NaN or inf), the first at "
        "sample 100; expected finite numbers")
    with pytest.raises(InputError, match="max_frames"):
        AudioFrontEnd(max_frames=0)


def test_chunked_analysis_matches_one_pass(monkeypatch):
    import edge_msa.features.audio as audio

    x = np.random.default_rng(1).normal(scale=0.1, size=3 * SAMPLE_RATE).astype(np.float32)
    whole = AudioFrontEnd(max_frames=500).extract(x, SAMPLE_RATE)
    monkeypatch.setattr(audio, "CHUNK_FRAMES", 37)
    np.testing.assert_allclose(AudioFrontEnd(max_frames=500).extract(x, SAMPLE_RATE), whole, atol=1e-5)


def silent_avi(path):
    """A 5-frame MJPG .avi written by OpenCV: a video container with no audio track."""
    from test_features_video import write_video  # skips the calling test when OpenCV is missing

    write_video(path, [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)])
    return path


@needs_cremad
def test_real_flv_audio_track_matches_the_resampled_wav_of_the_same_clip():
    """The MP3 track inside a CREMA-D FLV (44.1 kHz, via PyAV) vs the upstream 16 kHz WAV of that clip:
    same duration, and its log-mel features match that WAV better than any other clip's."""
    pytest.importorskip("av", reason="PyAV decodes the FLV's audio track (pip install 'edge-msa[media]')")
    flv = CREMAD / "data" / "1001_DFA_SAD_XX.flv"
    samples, rate = read_audio(flv)
    wav, wav_rate = sf.read(CREMAD / "resampled" / flv.with_suffix(".wav").name, dtype="float32")
    assert has_audio_track(flv) and samples.dtype == np.float32 and samples.ndim == 1 and rate == 44100
    assert abs(len(samples) / rate - 2.0) < 0.25 and abs(len(samples) / rate - len(wav) / wav_rate) < 0.03
    rms, wav_rms = np.sqrt(np.mean(samples ** 2)), np.sqrt(np.mean(wav ** 2))
    assert np.abs(samples).max() > 0.05 and 0.9 < rms / wav_rms < 1.1  # speech at the WAV's level, not silence
    fe = AudioFrontEnd()
    ours = fe(flv)[:, :40]  # (50, 40) log-mel
    corr = {emo: np.corrcoef(ours.ravel(), fe(CREMAD / "resampled" / f"1001_DFA_{emo}_XX.wav")[:, :40].ravel())[0, 1]
            for emo in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")}
    assert corr["SAD"] > 0.99 and corr["SAD"] - max(c for e, c in corr.items() if e != "SAD") > 0.05


def test_video_without_audio_track_and_corrupt_containers_are_one_line_input_errors(tmp_path):
    pytest.importorskip("av", reason="PyAV reads video containers (pip install 'edge-msa[media]')")
    silent = silent_avi(tmp_path / "silent.avi")
    message = one_line_error(lambda: AudioFrontEnd()(silent))
    assert str(silent) in message and "(AVI) has no audio track" in message and "--audio" in message
    # measured before the duration gate it read "is a AVI file without an audio track", without the hint
    assert one_line_error(lambda: refuse_long_media("audio", silent, MAX_MEDIA_SECONDS)) == message
    assert has_audio_track(silent) is False
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(3000))
    message = one_line_error(lambda: AudioFrontEnd()(tmp_path / "corrupt.mp4"))
    assert "cannot read audio" in message and "Invalid data" in message
    assert "[Errno" not in message and message.count("corrupt.mp4") == 1  # FFmpegError's str() repeated the path
    assert "cannot read audio" in one_line_error(lambda: has_audio_track(tmp_path / "corrupt.mp4"))


def test_missing_pyav_is_one_line_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "clip.flv").write_bytes(b"FLV")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(2000))
    monkeypatch.setitem(sys.modules, "av", None)  # any `import av` now fails
    with pytest.raises(MissingDependencyError) as info:
        AudioFrontEnd()(tmp_path / "clip.flv")
    assert "\n" not in str(info.value) and "reading audio from video containers" in str(info.value)
    assert "pip install av" in str(info.value)
    # a plain audio file soundfile rejects keeps soundfile's error (no PyAV fallback to try)
    assert "expected a WAV/FLAC/OGG/MP3 file" in one_line_error(lambda: AudioFrontEnd()(tmp_path / "corrupt.wav"))


def test_a_clip_just_over_the_limit_reads_above_it_in_featurize_predict_and_rest(tmp_path):
    """At one decimal, 2.33 s against a 2.3 s limit read "lasts 2.3 s; expected at most 2.3 s"; the REST service's 413
    was its own copy of that wording. Both now print the decimals it takes for the length to read above the limit."""
    from conftest import SERVE_SPEC
    from edge_msa.serve.inputs import Limits, RequestError, parse_item

    sf.write(tmp_path / "near.wav", np.zeros(2330, np.float32), 1000)  # 2.33 s at 1 kHz
    message = one_line_error(lambda: refuse_long_media("audio", tmp_path / "near.wav", 2.3))
    assert f"audio {tmp_path / 'near.wav'} lasts 2.33 s; expected at most 2.3 s (raise the limit" in message
    with pytest.raises(RequestError) as info:
        parse_item({"audio": (tmp_path / "near.wav").read_bytes()}, SERVE_SPEC, Limits(max_media_seconds=2.3),
                   lambda: tmp_path)
    assert info.value.status == 413 and info.value.message == "audio lasts 2.33 s; expected at most 2.3 s"


def test_samples_that_are_not_finite_are_counted_and_placed_per_channel():
    """Decoded samples holding NaN or inf were refused as "audio contains NaN or Inf samples" in words of their own,
    after the mix-down, so one bad sample of a stereo file was not placed: the one wording of predict's features
    (spec.check_finite), counted and placed in the samples as given."""
    stereo = np.stack([tone(200.0, SAMPLE_RATE, 0.2), tone(300.0, SAMPLE_RATE, 0.2)], axis=1)  # (3200, 2)
    stereo[7, 1], stereo[9, 0] = np.inf, np.nan
    assert one_line_error(lambda: AudioFrontEnd().extract(stereo, SAMPLE_RATE, source="clip.wav")) == (
        "clip.wav: audio samples hold 2 of 6400 values that are not finite (NaN or inf), the first at sample 7, "
        "channel 1; expected finite numbers")


def test_samples_without_a_channel_are_refused_in_one_line():
    """Samples of shape (T, 0) passed the NaN check (no values to count) and averaged to T NaN samples in the
    mix-down, under a numpy RuntimeWarning: one line now, as other unreadable audio."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" came first
        says = one_line_error(lambda: AudioFrontEnd().extract(np.zeros((3200, 0), np.float32), SAMPLE_RATE,
                                                              source="clip.wav"))
    assert says == "clip.wav: samples have shape (3200, 0); expected (T,) or (T, channels), channels >= 1"
