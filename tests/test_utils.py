from __future__ import annotations

import numpy as np
import pytest
import torch

from mslib.utils import RECORD_MIME, data_dir, get_device, read_records, record, seed_everything, to_jsonable


def test_get_device_auto_is_cpu_here_and_explicit_values():
    d = get_device("auto")
    assert d.type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert d.type in {"cpu", "mps"}
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="DEVICE="):
        get_device("gpu-please")


def test_seed_everything_reproduces_all_generators():
    g = seed_everything(123)
    a = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=g))
    g = seed_everything(123)
    b = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=g))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])
    with pytest.raises(TypeError):
        seed_everything("0")


def test_record_roundtrip_through_notebook_json():
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [{"output_type": "display_data", "data": {RECORD_MIME: {"dice": 0.8}, "text/plain": "x"}}],
            },
            {
                "cell_type": "code",
                "outputs": [{"output_type": "display_data", "data": {RECORD_MIME: {"dice": 0.9, "n": 3}}}],
            },
        ]
    }
    assert read_records(nb) == {"dice": 0.9, "n": 3}
    assert to_jsonable(torch.tensor(0.5)) == 0.5
    assert to_jsonable({"a": np.arange(3)}) == {"a": [0, 1, 2]}
    assert to_jsonable(float("nan")) == "nan"
    assert record("t", torch.tensor(0.5)) is None
    with pytest.raises(ValueError):
        record("", 1)
    with pytest.raises(TypeError):
        record("obj", object())


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("MSLIB_DATA_DIR")
    assert data_dir().name == "mslib"
