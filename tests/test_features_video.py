"""Video front end "face-v1": real CREMA-D FLVs, the no-face fallback, and every bad-input path."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA_ROOT, one_line_error
from edge_msa.errors import InputError
from edge_msa.features import front_end
from edge_msa.features.video import DIM, VideoFrontEnd, frame_features, gradient_histograms, read_frames

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is a core dependency of the video front end")
CREMAD = DATA_ROOT / "raw_av" / "cremad"
needs_cremad = pytest.mark.skipif(not (CREMAD / "data").is_dir(), reason=f"CREMA-D clips not found at {CREMAD}")
FACE_FLAG, BOX = 104, slice(100, 104)


def write_video(path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for f in frames:
        writer.write(f)
    writer.release()


def test_registry_builds_video_front_end():
    fe = front_end("face-v1", num_frames=4)
    assert isinstance(fe, VideoFrontEnd) and fe.dim == DIM == 105 and fe.num_frames == 4


def test_frames_without_faces_use_the_centre_crop_with_flag_zero(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.avi"
    write_video(path, [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(5)])
    fe = VideoFrontEnd(num_frames=16)
    feats = fe(path)
    assert feats.shape == (5, DIM) and feats.dtype == np.float32 and np.isfinite(feats).all()  # clip has 5 frames
    assert (feats[:, FACE_FLAG] == 0).all()
    np.testing.assert_allclose(feats[:, BOX], [[0.5, 0.5, 48 / 64, 1.0]] * 5)  # centre square, side 48 of 64x48
    assert set(fe.timings) == {"decode", "detect", "features"}


def test_uniform_sampling_keeps_num_frames(tmp_path):
    path = tmp_path / "ramp.avi"
    write_video(path, [np.full((32, 32, 3), 8 * i, dtype=np.uint8) for i in range(30)])
    assert VideoFrontEnd(num_frames=4)(path).shape == (4, DIM)


def test_a_header_frame_count_that_lies_still_gives_num_frames_spread_over_the_clip(tmp_path):
    """A truncated AVI keeps its header's 40 frames: picks at 40-frame positions past the real end were lost, so the
    clip gave 5 of 8 frames, all from its start, unlike the 8 spread-out frames the model was trained on."""
    path = tmp_path / "ramp.avi"
    write_video(path, [np.full((32, 32, 3), 6 * i, dtype=np.uint8) for i in range(40)])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 3 // 4])  # the header still says 40 frames
    capture = cv2.VideoCapture(str(path))
    claimed, real = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0
    while capture.grab():
        real += 1
    capture.release()
    assert claimed == 40 and 10 < real < 40
    frames = read_frames(path, 8)
    assert len(frames) == 8
    brightness = [int(f.mean()) for f in frames]  # frame i is 6 * i bright: the picks reach the last real frame
    assert brightness[0] == 0 and brightness[-1] >= 6 * (real - 2) and brightness == sorted(brightness)


def test_frame_features_layout():
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))  # horizontal ramp, 48x64
    feats = frame_features(gray, (8, 0, 48, 48), True)
    assert feats.shape == (DIM,)
    assert abs(feats[:64].mean()) < 1e-5 and abs(feats[:64].std() - 1.0) < 0.05  # normalised 8x8 pixels
    np.testing.assert_allclose(feats[BOX], [32 / 64, 24 / 48, 48 / 64, 1.0])
    assert feats[FACE_FLAG] == 1.0
    hog = gradient_histograms(np.tile(np.linspace(0, 1, 48, dtype=np.float32), (48, 1)))
    assert abs(np.linalg.norm(hog) - 1.0) < 1e-5
    assert np.allclose(hog.reshape(4, 9)[:, 0], 0.5)  # only horizontal gradients: orientation bin 0, 4 cells


@needs_cremad
@pytest.mark.slow
def test_real_cremad_flvs_find_faces_and_differ_by_emotion():
    fe = VideoFrontEnd()
    feats = {emo: fe(CREMAD / "data" / f"1001_DFA_{emo}_XX.flv") for emo in ("HAP", "SAD")}
    for x in feats.values():
        assert x.shape == (16, DIM) and x.dtype == np.float32 and np.isfinite(x).all()
        assert x[:, FACE_FLAG].mean() > 0.8  # a frontal talking head in every clip
        assert 0.15 < x[:, 102].mean() < 0.5  # face width is a plausible fraction of the 480 px frame
    assert np.abs(feats["HAP"] - feats["SAD"]).mean() > 0.05
    assert fe.timings["decode"] > 0 and fe.timings["detect"] > 0


def test_a_still_image_is_refused_not_taken_as_a_one_frame_clip(tmp_path):
    """FFmpeg opens a .jpg / .png as a 1-frame video: a photo passed as a clip of one frozen face, unlike the
    utterances the models learned expressions from (REST refuses images as video with 415)."""
    fe = VideoFrontEnd()
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for name in ("face.jpg", "face.png"):
        cv2.imwrite(str(tmp_path / name), image)
        message = one_line_error(lambda: fe(tmp_path / name))
        assert f"{name} is a still image (1 frame); expected a video clip" in message
    write_video(tmp_path / "two.avi", [image, image])
    assert fe(tmp_path / "two.avi").shape == (2, DIM)  # two frames are a (short) clip


def test_bad_video_inputs_raise_one_line_input_errors(tmp_path):
    fe = VideoFrontEnd()
    assert f"video file not found: {tmp_path / 'nope.mp4'}; expected a video" in one_line_error(
        lambda: fe(tmp_path / "nope.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty" in one_line_error(lambda: fe(tmp_path / "empty.mp4"))
    (tmp_path / "folder.mp4").mkdir()
    assert "folder.mp4 is a folder; expected a video" in one_line_error(lambda: fe(tmp_path / "folder.mp4"))
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    assert "cannot open video" in one_line_error(lambda: fe(tmp_path / "corrupt.mp4"))
    (tmp_path / "text.avi").write_text("not a video")
    assert "cannot open video" in one_line_error(lambda: fe(tmp_path / "text.avi"))
    writer = cv2.VideoWriter(str(tmp_path / "noframes.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()  # a valid container holding zero frames
    assert "no readable frames" in one_line_error(lambda: fe(tmp_path / "noframes.avi"))
    with pytest.raises(InputError, match="num_frames"):
        VideoFrontEnd(num_frames=0)
