"""Calibration data loaders: .npz, folder of .npy, dict of arrays, iterable of feed dicts,
random data; and every error a user can make with them."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edgec.errors import EdgecError
from edgec.ir.graph import Graph, Value
from edgec.quant.data import (CalibrationCountError, CalibrationDataError, CalibrationDtypeError, CalibrationNameError,
                              CalibrationShapeError, EmptyCalibrationDataError, input_infos, load_calibration,
                              random_calibration)

INFOS = {"img": ((1, 3, 4, 4), "float32"), "ids": ((2, 5), "int64")}


def _arrays(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"img": rng.standard_normal((n, 1, 3, 4, 4)).astype(np.float32),
            "ids": rng.integers(0, 100, (n, 2, 5)).astype(np.int64)}


def _check_feeds(feeds, arrays):
    got = list(feeds)
    assert len(got) == arrays["img"].shape[0]
    for k, f in enumerate(got):
        assert set(f) == {"img", "ids"}
        assert f["img"].shape == (1, 3, 4, 4) and f["img"].dtype == np.float32
        assert f["ids"].shape == (2, 5) and f["ids"].dtype == np.int64
        np.testing.assert_array_equal(f["img"].reshape(-1), arrays["img"][k].reshape(-1))
        np.testing.assert_array_equal(f["ids"], arrays["ids"][k])


def test_npz(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "c.npz", **a)
    feeds = load_calibration(tmp_path / "c.npz", INFOS)
    assert feeds.total == 6
    _check_feeds(feeds, a)


def test_npz_without_leading_batch_dim_and_casts(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "c.npz", img=a["img"][:, 0].astype(np.float64), ids=a["ids"].astype(np.int32))
    _check_feeds(load_calibration(str(tmp_path / "c.npz"), INFOS), a)


def test_folder(tmp_path):
    a = _arrays(4)
    d = tmp_path / "calib"
    d.mkdir()
    for k, v in a.items():
        np.save(d / f"{k}.npy", v)
    feeds = load_calibration(d, INFOS)
    assert feeds.total == 4
    _check_feeds(feeds, a)


def test_single_npy_file(tmp_path):
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    np.save(tmp_path / "x.npy", x)
    feeds = list(load_calibration(tmp_path / "x.npy", {"x": ((1, 8), "float32")}))
    assert len(feeds) == 2 and np.array_equal(feeds[1]["x"], x[1:2])


def test_dict_of_arrays_and_graph_infos():
    g = Graph([], {"x": Value("x", "float32", (1, 8))}, ["x"], [])
    x = np.arange(24, dtype=np.float32).reshape(3, 8)
    feeds = list(load_calibration({"x": x}, g))
    assert [f["x"].shape for f in feeds] == [(1, 8)] * 3 and np.array_equal(feeds[2]["x"][0], x[2])
    assert input_infos([Value("x", "float32", (1, 8))]) == {"x": ((1, 8), np.dtype("float32"))}


def test_iterable():
    a = _arrays(3)
    items = [{"img": a["img"][k][0], "ids": a["ids"][k]} for k in range(3)]  # batchless img
    feeds = load_calibration(items, INFOS)
    assert feeds.total == 3
    _check_feeds(feeds, a)
    gen = load_calibration((f for f in items), INFOS)  # a generator: total unknown, consumed lazily
    assert gen.total is None
    _check_feeds(gen, a)


def test_errors_names(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "m.npz", img=a["img"])
    with pytest.raises(CalibrationNameError, match=r"no data for input\(s\) \['ids'\]"):
        load_calibration(tmp_path / "m.npz", INFOS)
    np.savez(tmp_path / "u.npz", extra=a["img"], **a)
    with pytest.raises(CalibrationNameError, match="'extra'"):
        load_calibration(tmp_path / "u.npz", INFOS)
    with pytest.raises(CalibrationNameError, match="sample 1.*missing"):
        list(load_calibration([{"img": a["img"][0], "ids": a["ids"][0]}, {"img": a["img"][1]}], INFOS))


def test_errors_shapes_dtypes_counts(tmp_path):
    a = _arrays()
    with pytest.raises(CalibrationShapeError, match="'img'"):
        load_calibration({"img": a["img"][:, :, :2], "ids": a["ids"]}, INFOS)
    with pytest.raises(CalibrationShapeError, match="'ids'"):  # leading dim 2: no batchless form
        load_calibration({"img": a["img"], "ids": a["ids"][:, 0]}, INFOS)
    with pytest.raises(CalibrationShapeError):
        list(load_calibration([{"img": np.zeros((3, 4, 5), np.float32), "ids": a["ids"][0]}], INFOS))
    with pytest.raises(CalibrationDtypeError, match="float32"):
        load_calibration({"img": a["img"].astype(np.uint8), "ids": a["ids"]}, INFOS)
    with pytest.raises(CalibrationDtypeError, match="int64"):
        load_calibration({"img": a["img"], "ids": a["ids"].astype(np.float32)}, INFOS)
    with pytest.raises(CalibrationDtypeError, match="do not fit"):
        infos = {"t": ((1, 2), "int8")}
        list(load_calibration({"t": np.array([[[1, 300]]], np.int64)}, infos))
    with pytest.raises(CalibrationCountError, match="img: 6, ids: 5"):
        load_calibration({"img": a["img"], "ids": a["ids"][:5]}, INFOS)


def test_errors_empty_and_unreadable(tmp_path):
    a = _arrays(0)
    with pytest.raises(EmptyCalibrationDataError):
        load_calibration(a, INFOS)
    with pytest.raises(EmptyCalibrationDataError):
        load_calibration([], INFOS)
    with pytest.raises(EmptyCalibrationDataError):
        list(load_calibration(iter([]), INFOS))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyCalibrationDataError):
        load_calibration(tmp_path / "empty", INFOS)
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(CalibrationDataError):
        load_calibration(tmp_path / "bad.npz", INFOS)
    with pytest.raises(CalibrationDataError, match="no such file"):
        load_calibration(tmp_path / "nope.npz", INFOS)
    with pytest.raises(CalibrationDataError):
        load_calibration(42, INFOS)
    for cls in (CalibrationNameError, CalibrationShapeError, CalibrationDtypeError, EmptyCalibrationDataError,
                CalibrationCountError):
        assert issubclass(cls, CalibrationDataError) and issubclass(cls, EdgecError)


def test_random_calibration(caplog):
    with caplog.at_level(logging.WARNING, logger="edgec.quant"):
        feeds = random_calibration(INFOS, 5, seed=3)
    assert "accuracy of the quantized model is unknown" in caplog.text
    got = list(feeds)
    assert feeds.total == 5 and len(got) == 5
    assert all(f["img"].dtype == np.float32 and f["img"].shape == (1, 3, 4, 4) for f in got)
    assert all(f["ids"].dtype == np.int64 and f["ids"].min() >= 0 and f["ids"].max() < 2 for f in got)
    again = list(random_calibration(INFOS, 5, seed=3))
    assert all(np.array_equal(x["img"], y["img"]) for x, y in zip(got, again))
    assert not np.array_equal(got[0]["img"], got[1]["img"])
    with pytest.raises(EmptyCalibrationDataError):
        random_calibration(INFOS, 0)
