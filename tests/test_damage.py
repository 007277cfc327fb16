"""A damaged episode file either still loads as a valid episode or raises the one format error, never anything
else: a property test over random damage (truncation, flipped bytes, dropped datasets, changed dtypes), and one
test per kind of damage a researcher's copy of EgoDex can hold."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tkjepa.egodex import EgoDexFormatError, load_episode, write_episode
from tkjepa.world import WorldConfig, generate_episode


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """One valid episode (a short world episode, 32 frames) on disk."""
    ep = generate_episode(3, WorldConfig(num_frames=32))
    return write_episode(ep, tmp_path_factory.mktemp("good"), 0)


def _copy(h5: Path, where: Path) -> Path:
    shutil.copy(h5, where / h5.name)
    shutil.copy(h5.with_suffix(".mp4"), where / h5.with_suffix(".mp4").name)
    return where / h5.name


def _datasets(h5: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(h5, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def damage(h5: Path, kind: str, at: float, byte: int) -> None:
    """Damage the episode in place: `at` in [0, 1) picks where (a byte offset, or which dataset)."""
    target = h5.with_suffix(".mp4") if kind.endswith("mp4") else h5
    data = bytearray(target.read_bytes())
    if kind.startswith("truncate"):
        target.write_bytes(bytes(data[:int(at * len(data))]))
    elif kind.startswith("flip"):
        for k in range(8):                                     # a run of 8 damaged bytes
            i = (int(at * len(data)) + k) % len(data)
            data[i] ^= (byte + k) % 255 + 1
        target.write_bytes(bytes(data))
    else:
        names = _datasets(h5)
        name = names[int(at * len(names))]
        with h5py.File(h5, "r+") as f:
            values = f[name][()]
            del f[name]
            if kind == "change_dtype":                         # numbers -> text, or text -> numbers
                numeric = np.issubdtype(np.asarray(values).dtype, np.number)
                f.create_dataset(name, data=np.array(["x"] * max(1, np.size(values)), dtype=h5py.string_dtype())
                                 if numeric else np.zeros(3, np.int8))


KINDS = ["truncate_hdf5", "flip_hdf5", "truncate_mp4", "flip_mp4", "drop_dataset", "change_dtype"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), at=st.floats(0, 0.999), byte=st.integers(0, 254))
def test_damaged_files_load_or_raise_the_format_error(good, kind, at, byte):
    with tempfile.TemporaryDirectory() as tmp:
        h5 = _copy(good, Path(tmp))
        damage(h5, kind, at, byte)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")                # NaN confidences, bad UTF-8: warned, not fatal
                ep = load_episode(h5)
        except EgoDexFormatError as e:
            assert str(h5.name) in str(e) or h5.with_suffix(".mp4").name in str(e)
            return
        T = ep.num_frames                                      # it loaded: then it is a whole episode
        assert ep.frames.shape == (T, 64, 64, 3) and all(v.shape == (T, 4, 4) for v in ep.transforms.values())
        assert all(np.isfinite(v).all() for v in ep.transforms.values())
        assert all(((c >= 0) & (c <= 1)).all() for c in ep.confidences.values())


def _edit(good: Path, tmp_path: Path, edit) -> Path:
    h5 = _copy(good, tmp_path)
    with h5py.File(h5, "r+") as f:
        edit(f)
    return h5


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["camera/intrinsic"].__setitem__((0, 0), -5.0), "fx = -5"),
    (lambda f: f["camera/intrinsic"].__setitem__((1, 1), 0.0), "fy = 0"),
    (lambda f: f["transforms/rightHand"].__setitem__((3, 0, 0), 4.0), "frame 3 is not a rigid pose"),
    (lambda f: f["transforms/rightHand"].__setitem__((2, 3, 0), 1.0), "last row"),
    (lambda f: f["transforms/rightHand"].__setitem__((1, 0, 3), 5e4), "from the origin"),
    (lambda f: f["confidences/rightHand"].__setitem__(4, 1.5), "outside [0, 1]"),
    (lambda f: (f.__delitem__("transforms/rightHand"),
                f.create_dataset("transforms/rightHand", data=np.array(["a"] * 32, dtype=h5py.string_dtype()))),
     "expected numbers"),
])
def test_each_kind_of_bad_value_gets_its_message(good, tmp_path, edit, message):
    h5 = _edit(good, tmp_path, edit)
    with pytest.raises(EgoDexFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_episode(h5)


def test_nan_confidences_and_bad_utf8_are_warned_not_fatal(good, tmp_path):
    def edit(f):
        f["confidences/rightHand"][2] = np.nan
        f.attrs["environment"] = np.bytes_(b"table \xff\xfe")
    h5 = _edit(good, tmp_path, edit)
    with pytest.warns(UserWarning) as caught:
        ep = load_episode(h5)
    text = " ".join(str(w.message) for w in caught)
    assert "NaN" in text and "UTF-8" in text
    assert ep.confidences["rightHand"][2] == 0 and ep.environment.startswith("table ")
