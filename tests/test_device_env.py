"""The device as it is: a read-only bundle on an odd path, no home or cache folder to write to. Loading and
predicting must write nothing anywhere, and a cache that cannot be written leaves its results in memory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _permissions_bind() -> list[str]:
    """The command prefix under which file permissions bind a subprocess: none for a user; for root, setpriv
    dropping the capabilities that bypass them (the test is skipped without setpriv)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permission bits do not bind")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_only_bundle_on_an_odd_relative_path_loads_and_predicts_writing_nothing(token_bundle, tmp_path):
    """onnxruntime (1.29 and later, on Linux) kept a telemetry database in ~/.cache/Microsoft/DeveloperTools, or
    $XDG_CACHE_HOME's, from its import on, and said 'Failed to persist telemetry device ID' on stderr where that
    folder was read-only: on a device, where the bundle and the home folder are read-only, edge-msa wrote outside
    the bundle and every start printed that line."""
    folder = tmp_path / "dir with spaces" / "ünïcödé 日本"
    shutil.copytree(token_bundle, folder / "bundle")
    for path in (folder / "bundle", *(folder / "bundle").iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    (tmp_path / "xdg").mkdir()
    before = _tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "EDGE_MSA_CACHE", "ORT_DISABLE_TELEMETRY")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None\n"
            "import edge_msa\n"
            "with edge_msa.load('dir with spaces/ünïcödé 日本/bundle') as p:\n"
            "    print(p.predict(text='a good film').score, p.predict_batch([{'text': 'bad'}, {'text': 'ok'}])[1].ran)")
    r = subprocess.run([*_permissions_bind(), sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "telemetry" not in r.stderr, r.stderr
    assert r.stdout.split()[-1] == "['text']"
    assert _tree(tmp_path) == before  # nothing new or changed: the bundle, the cache folders, the working directory


def test_onnxruntime_imported_before_edge_msa_records_no_events_after_it(token_bundle, tmp_path):
    """ORT_DISABLE_TELEMETRY, set by `import edge_msa`, comes too late where the program imported onnxruntime first:
    its database and device id are written at its import (edge-msa cannot undo that), and each later run error was
    recorded there too (message, source file, function), to upload to Microsoft."""
    unset = ("EDGE_MSA_CACHE", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    env = {**{k: v for k, v in os.environ.items() if k not in unset}, "HOME": str(tmp_path)}
    code = ("import numpy as np, onnxruntime, edge_msa\n"
            f"with edge_msa.load({str(token_bundle)!r}) as p:\n"
            "    s = p.backends['encode_text'].session\n"
            "    try:\n"
            "        s.run(None, {i.name: np.zeros((1, 1)) for i in s.get_inputs()})  # float64: a wrong type\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr  # onnxruntime refused the run
    recorded = [p for p in tmp_path.rglob("*") if p.is_file()]
    if not recorded:
        pytest.skip("this onnxruntime keeps no telemetry database")
    assert not [p for p in recorded if b"RuntimeError" in p.read_bytes()]


def test_a_bundle_loaded_by_a_relative_path_still_reads_its_files_after_a_chdir(token_bundle, monkeypatch):
    """The tokenizer is read at the first text, from the bundle path as given: after a chdir (a daemon's chdir('/'),
    a service that changes folder) a relative path named nothing, and the first text failed 'tokenizer file not
    found: bundle/tokenizer.json'."""
    import edge_msa

    monkeypatch.chdir(token_bundle.parent)
    with edge_msa.load(token_bundle.name) as p:
        monkeypatch.chdir("/")
        assert p.predict(text="a good film").ran == ["text"]


def _encode_twice(tokenizer: Path) -> list[str]:
    """encode_cached on the same texts twice (a miss, then what would be a hit): both give the features; the
    warnings they raise, as text."""
    import numpy as np

    from edge_msa.features.text import TokenIds, encode_cached

    encoder = TokenIds(tokenizer, max_len=12)
    want, lengths = encoder.encode(["a good film", "bad"])
    with pytest.warns(UserWarning) as caught:
        for _ in range(2):
            feats, got = encode_cached(encoder, ["a good film", "bad"], progress=False)
            assert np.array_equal(feats, want) and np.array_equal(got, lengths)
    return [str(w.message) for w in caught]


def test_a_text_cache_that_cannot_be_written_keeps_the_features_in_memory_with_one_warning(tiny_bert_dir, tmp_path,
                                                                                           monkeypatch):
    """A read-only cache folder (a device, a shared machine) failed `edge-msa eval` with exit 2 ('cannot write
    .../text/minilm-l6-int8-....npz'), after the features it would have cached were computed."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "file" / "cache"))  # under a file: refused, root or not
    warned = _encode_twice(tiny_bert_dir / "tokenizer.json")
    assert len(warned) == 1 and f"{tmp_path / 'file'} is a file" in warned[0] and "kept in memory" in warned[0]
    assert "\n" not in warned[0]


def test_without_a_home_folder_the_text_cache_is_off_with_one_warning(tiny_bert_dir, monkeypatch):
    """No $HOME and no home directory for the user (a container under an arbitrary uid): Path.home() raised a
    RuntimeError traceback, even with $EDGE_MSA_CACHE set, since the default was computed first."""
    import pwd

    from edge_msa.paths import cache_dir

    def no_user(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_user)
    monkeypatch.setenv("EDGE_MSA_CACHE", "/somewhere")
    assert cache_dir() == Path("/somewhere")
    monkeypatch.setenv("EDGE_MSA_CACHE", "")  # empty is unset: Path("") was the working directory
    warned = _encode_twice(tiny_bert_dir / "tokenizer.json")
    assert len(warned) == 1 and "no home directory" in warned[0] and "EDGE_MSA_CACHE" in warned[0]


def test_a_bundle_path_that_is_not_utf8_is_refused_in_one_line_at_load(token_bundle, tmp_path, monkeypatch):
    """A folder named in another encoding (a Latin-1 'café' on a memory card): onnxruntime and tokenizers take UTF-8
    paths only, and the bundle was called corrupt ('cannot load graph ... re-export the bundle')."""
    import edge_msa
    from conftest import one_line_error

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    shutil.copytree(token_bundle, folder)
    message = one_line_error(lambda: edge_msa.load(folder))
    assert message.startswith(f"bundle path {str(folder)!r} is not valid UTF-8") and "rename it" in message
    monkeypatch.chdir(folder)  # a relative path inside it is read from that folder too
    assert "is not valid UTF-8" in one_line_error(lambda: edge_msa.load("."))


def test_a_media_file_whose_path_is_not_utf8_is_refused_in_one_line_before_any_decoder(media_bundle, tmp_path):
    """soundfile raised a UnicodeEncodeError traceback on such a name, and OpenCV's VideoCapture crashed the process
    (a segmentation fault, so only audio is tried here)."""
    import edge_msa
    from conftest import one_line_error

    wav = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.wav"))
    wav.write_bytes(b"RIFF....")  # refused before it is read
    with edge_msa.load(media_bundle) as p:
        message = one_line_error(lambda: p.predict(text="a good film", audio=wav))
    assert message.startswith(f"audio file path {str(wav)!r} is not valid UTF-8; expected a UTF-8 path")


def _as_a_user_without(chmod: str, bundle: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`edge-msa predict` on a copy of `bundle` whose file `chmod` is unreadable (mode 000)."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / chmod).chmod(0)
    return subprocess.run([*_permissions_bind(), sys.executable, "-m", "edge_msa", "predict", str(copy), "--text",
                           "a good film"], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["manifest.json", "gate.onnx", "tokenizer.json"])
def test_a_bundle_file_this_user_cannot_read_is_one_line_at_load(token_bundle, tmp_path, name):
    """A bundle copied from another user or machine keeps its permissions (0600 files): an unreadable graph was
    called 'corrupt or truncated, re-export the bundle', and an unreadable manifest or tokenizer raised a
    PermissionError traceback (the tokenizer's only at the first text)."""
    r = _as_a_user_without(name, token_bundle, tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: '{tmp_path / 'copy' / name}' cannot be read by this user (permission denied)")
