"""The restricted unpickler: numpy arrays and containers load; anything else is refused by name."""
from __future__ import annotations

import os
import pickle
from collections import Counter

import numpy as np
import pytest

from edge_msa.data.pickle_safe import load_pickle
from edge_msa.errors import ArtifactError, InputError


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def write(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_numpy_and_containers_round_trip(tmp_path, protocol):
    obj = {"train": {"audio": np.arange(6, dtype=np.float64).reshape(2, 3), "id": np.array(["a$_$1", "b$_$2"],
           dtype=object), "labels": np.float32(1.5), "lens": [3, 2], "pair": (1, "x")}}
    got = load_pickle(write(tmp_path / "ok.pkl", obj, protocol))
    np.testing.assert_array_equal(got["train"]["audio"], obj["train"]["audio"])
    assert got["train"]["id"].tolist() == ["a$_$1", "b$_$2"] and got["train"]["pair"] == (1, "x")
    assert got["train"]["labels"] == np.float32(1.5)


def test_code_execution_is_refused_by_name(tmp_path):
    path = write(tmp_path / "evil.pkl", [Evil()])
    with pytest.raises(ArtifactError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        load_pickle(path)


def test_other_classes_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"refusing to unpickle collections\.Counter"):
        load_pickle(write(tmp_path / "counter.pkl", Counter("abc")))


def test_truncated_and_missing_files(tmp_path):
    path = write(tmp_path / "cut.pkl", {"a": np.zeros(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ArtifactError, match="not a readable pickle"):
        load_pickle(path)
    with pytest.raises(InputError, match="pickle file not found: .*absent.pkl; expected a dataset pickle"):
        load_pickle(tmp_path / "absent.pkl")


def test_an_npz_read_as_a_pickle_is_a_one_line_error(tmp_path):
    """`--data-format misa` on an .npz: the unpickler's own message spans two lines ("persistent id ...,\\nbut no
    persistent_load ..."), which split the CLI's `error:` line."""
    np.savez(tmp_path / "d.npz", a=np.zeros(3))
    with pytest.raises(ArtifactError, match="not a readable pickle .*persistent_load") as info:
        load_pickle(tmp_path / "d.npz")
    assert "\n" not in str(info.value)
