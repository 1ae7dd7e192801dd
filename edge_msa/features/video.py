"""Video front end "face-v1": a video file -> (L <= num_frames, 105) float32 per-frame face features.

Pipeline (OpenCV + numpy only): decode and keep `num_frames` frames spread uniformly over the clip ->
grayscale -> largest frontal face (OpenCV's Haar cascade, run on a copy at most DETECT_WIDTH wide) ->
crop, resize to 48x48 -> per frame:
- [0:64]    the face downsampled to 8x8, zero-mean / unit-variance (lighting invariant),
- [64:100]  HOG-like gradient orientation histograms: 2x2 cells x 9 unsigned orientations,
            magnitude-weighted, L2-normalised over the 36 values,
- [100:104] face box geometry: centre x, centre y, width, height as fractions of the frame size,
- [104]     face flag: 1 if a face was found in this frame.
A frame with no detected face is still used: its features come from the frame's centre square crop
(side = the shorter frame side), with that crop as the box and face flag 0. A clip with no decodable
frame, or only one (a still image; see read_frames), raises InputError.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import numpy as np

from ..errors import MEDIA_FIX, InputError, MissingDependencyError, require
from . import STILL_IMAGE, media_file

NAME = "face-v1"
FACE_SIZE = 48
PIXEL_GRID = 8
HOG_CELLS = 2  # per side
HOG_BINS = 9
DIM = PIXEL_GRID * PIXEL_GRID + HOG_CELLS * HOG_CELLS * HOG_BINS + 4 + 1
DEFAULT_NUM_FRAMES = 16
DETECT_WIDTH = 320  # detection runs on frames downscaled to this width (faces in talking-head clips are large)
MIN_FACE_FRACTION = 0.1  # smallest face side searched, as a fraction of the detection image width
SCALE_STEP = 1.2  # Haar pyramid step: 1.2 is ~2.5x faster than 1.1 with the same boxes on CREMA-D clips
CASCADE = "haarcascade_frontalface_default.xml"
OPENCV_FIX = f"{MEDIA_FIX} (opencv-python-headless<5)"


def _cv2() -> ModuleType:
    # FFmpeg's own stderr chatter ("moov atom not found") would duplicate our one-line InputError; OpenCV
    # reads this variable when it opens its first capture. A value the user set wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    return require("cv2", "the video front end", OPENCV_FIX)


class VideoFrontEnd:
    """`__call__(path) -> (L <= num_frames, 105) float32`; see the module docstring for the columns.

    `timings` holds the seconds each stage took in the latest call: decode (incl. seeking and
    grayscale), detect (face detection), features.
    """

    name = NAME
    dim = DIM

    def __init__(self, num_frames: int = DEFAULT_NUM_FRAMES) -> None:
        if num_frames < 1:
            raise InputError(f"video num_frames must be >= 1; got {num_frames}")
        self.num_frames = int(num_frames)
        self.timings: dict[str, float] = {}
        cv2 = _cv2()
        data = getattr(cv2, "data", None)
        cascade_path = Path(getattr(data, "haarcascades", "")) / CASCADE
        detector = cv2.CascadeClassifier(str(cascade_path)) if cascade_path.is_file() else None
        if detector is None or detector.empty():
            raise MissingDependencyError(f"OpenCV {cv2.__version__} ships no usable {CASCADE} (needed by the "
                                         f"video front end); fix: {OPENCV_FIX}")
        self._detector = detector

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        t0 = time.perf_counter()
        frames = read_frames(path, self.num_frames)
        t1 = time.perf_counter()
        boxes = [self.detect(f) for f in frames]
        t2 = time.perf_counter()
        feats = np.stack([frame_features(f, box, found) for f, (box, found) in zip(frames, boxes)])  # (L, DIM)
        self.timings = {"decode": t1 - t0, "detect": t2 - t1, "features": time.perf_counter() - t2}
        return feats.astype(np.float32)

    def detect(self, gray: np.ndarray) -> tuple[tuple[int, int, int, int], bool]:
        """((x, y, w, h) of the largest face, True), or (the centre square crop, False) when none is found."""
        cv2 = _cv2()
        height, width = gray.shape
        scale = min(1.0, DETECT_WIDTH / width)
        small = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        side = max(1, int(MIN_FACE_FRACTION * small.shape[1]))
        faces = self._detector.detectMultiScale(small, scaleFactor=SCALE_STEP, minNeighbors=5, minSize=(side, side))
        if len(faces):
            x, y, w, h = (int(round(v / scale)) for v in max(faces, key=lambda b: int(b[2]) * int(b[3])))
            return (x, y, w, h), True
        s = min(height, width)
        return ((width - s) // 2, (height - s) // 2, s, s), False


def frame_features(gray: np.ndarray, box: tuple[int, int, int, int], found: bool) -> np.ndarray:
    """(DIM,) features of one grayscale frame (H, W) uint8 given the face box (x, y, w, h)."""
    cv2 = _cv2()
    height, width = gray.shape
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    crop = gray[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else gray
    face = cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    pixels = cv2.resize(face, (PIXEL_GRID, PIXEL_GRID), interpolation=cv2.INTER_AREA).ravel()  # (64,)
    pixels = (pixels - pixels.mean()) / (pixels.std() + 1e-3)
    geometry = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
    return np.concatenate([pixels, gradient_histograms(face), geometry, [float(found)]])


def gradient_histograms(face: np.ndarray) -> np.ndarray:
    """(HOG_CELLS^2 * HOG_BINS,) magnitude-weighted unsigned orientation histograms per cell, L2-normalised."""
    gy, gx = np.gradient(face)  # (S, S) each
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # [0, pi): unsigned orientation
    bins = np.minimum((angle / np.pi * HOG_BINS).astype(np.int64), HOG_BINS - 1)  # (S, S)
    cell = (np.arange(FACE_SIZE) * HOG_CELLS // FACE_SIZE)  # (S,) cell index along one axis
    cells = cell[:, None] * HOG_CELLS + cell[None, :]  # (S, S)
    hist = np.bincount((cells * HOG_BINS + bins).ravel(), weights=magnitude.ravel(),
                       minlength=HOG_CELLS * HOG_CELLS * HOG_BINS)  # (36,)
    return hist / (np.linalg.norm(hist) + 1e-6)


def read_frames(path: str | os.PathLike, num_frames: int) -> list[np.ndarray]:
    """Up to `num_frames` grayscale frames (H, W) uint8 spread uniformly over the video; InputError if none.

    The header's frame count is only a hint: MKV/WebM/FLV estimate it from duration x fps (an MKV of 56 frames
    says 59, so the last pick was never reached and the clip gave 15 of 16 frames), a truncated upload keeps the
    full count (4 frames from its first third), and browser-recorded WebM has none (-2.8e17). When the frames
    decoded differ from the header, a second pass picks over the frames that exist, so every clip is sampled as
    in training; decoding is grab-only except for the picked frames, so memory never grows with clip length.

    A still image (FFmpeg opens a .jpg / .png as a 1-frame video) is refused, not taken as a 1-frame clip: the
    features are a sequence over an utterance, the models learned expressions as they move across its frames, and
    a photo would score as a clip of a frozen face; the REST service refuses images as video (415) the same way.
    """
    p = media_file(path, "video file", "a video OpenCV can decode")
    cv2 = _cv2()
    with open_capture(cv2, p) as cap:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames, total = pick_frames(cv2, cap, count, num_frames)
    if total == 1:
        raise InputError(f"video {p} {STILL_IMAGE}")
    if 0 < total != count:
        with open_capture(cv2, p) as cap:
            frames, _ = pick_frames(cv2, cap, total, num_frames)
    if not frames:
        raise InputError(f"no readable frames in video {p}; expected a file OpenCV/FFmpeg can decode")
    return frames


@contextmanager
def open_capture(cv2: ModuleType, path: Path) -> Iterator[Any]:
    """An opened cv2.VideoCapture on `path`, released afterwards; a file OpenCV cannot open -> InputError."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video {path}; expected a file OpenCV/FFmpeg can decode (mp4, avi, flv, ...)")
        yield cap
    finally:
        cap.release()


def pick_frames(cv2: ModuleType, cap: Any, count: int, num_frames: int) -> tuple[list[np.ndarray], int]:
    """(grayscale frames at num_frames uniform positions of a `count`-frame clip, the frames the capture really
    holds): every frame is grabbed (decoded), only the picked ones are converted."""
    wanted = set(np.linspace(0, count - 1, num_frames).round().astype(int).tolist()) if count > 0 else set()
    frames, total = [], 0
    while cap.grab():
        if total in wanted:
            ok, frame = cap.retrieve()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
        total += 1
    return frames, total
