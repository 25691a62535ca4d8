"""Every refusal of fxp.ops.qlinear, fxp.ops.qlinear_pool and fxp.ops.tflite: one line,
naming the function, the argument and the value."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_tflite
from fxp.ops.qlinear import (
    qlinear_add,
    qlinear_concat,
    qlinear_lookup,
    qlinear_sigmoid,
    qlinear_table,
)
from fxp.ops.qlinear_pool import qlinear_avgpool, qlinear_global_avgpool
from fxp.ops.tflite import tflite_add, tflite_add_params, tflite_avgpool, tflite_mean_hw

I8, U8 = QFormat.integer(8), QFormat.integer(8, signed=False)
Q = {"x_scale": 0.1, "x_zero_point": 0, "y_scale": 0.1, "y_zero_point": 0, "fmt": I8}
ADD = {"a_scale": 0.1, "a_zero_point": 0, "b_scale": 0.1, "b_zero_point": 0, "y_scale": 0.1,
       "y_zero_point": 0, "fmt": I8}
X4 = np.zeros((1, 1, 3, 3), np.int64)


def _one_line(exc):
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({**ADD, "fmt": QFormat.integer(16)}, r"qlinear_add: .*int8 or uint8"),
    ({**ADD, "a_scale": [0.1, 0.2]}, r"qlinear_add: a_scale must be one real number"),
    ({**ADD, "b_scale": "0.1"}, r"qlinear_add: b_scale must be one real number"),
    ({**ADD, "y_scale": -1.0}, r"qlinear_add: y_scale must be finite and > 0"),
    ({**ADD, "y_scale": 1e39}, r"qlinear_add: y_scale must be finite and > 0"),
    ({**ADD, "a_zero_point": 0.5}, r"qlinear_add: a_zero_point must be one integer"),
    ({**ADD, "fmt": U8, "b_zero_point": -1}, r"qlinear_add: b_zero_point=-1 is outside"),
    ({**ADD, "y_scale": 1e-45}, r"scale ratios .* must be finite"),
])
def test_qlinear_add_refuses(kwargs, match):
    with pytest.raises(FormatError, match=match) as exc:
        qlinear_add([1, 2], [3, 4], **kwargs)
    _one_line(exc)


def test_qlinear_add_refuses_codes_and_shapes():
    with pytest.raises(FormatError, match=r"qlinear_add: a: code 300 at flat index 1"):
        qlinear_add([1, 300], [3, 4], **ADD)
    with pytest.raises(FormatError, match=r"same shape or one of them a single element .* "
                                          r"\(2,\) and \(3,\)"):
        qlinear_add([1, 2], [3, 4, 5], **ADD)
    with pytest.raises(FormatError, match="backend must be 'numba' or 'numpy'"):
        qlinear_add([1, 2], [3, 4], backend="cuda", **ADD)


def test_qlinear_table_refuses():
    with pytest.raises(FormatError, match="unknown op 'tanh'"):
        qlinear_table("tanh", **Q)
    with pytest.raises(FormatError, match="alpha is required for leaky_relu"):
        qlinear_table("leaky_relu", **Q)
    with pytest.raises(FormatError, match="alpha is required for leaky_relu and only"):
        qlinear_table("sigmoid", alpha=0.1, **Q)
    with pytest.raises(FormatError, match="alpha must be a real number"):
        qlinear_table("leaky_relu", alpha="0.1", **Q)
    with pytest.raises(FormatError, match="alpha must be finite"):
        qlinear_table("leaky_relu", alpha=float("nan"), **Q)
    with pytest.raises(FormatError, match=r"qlinear_table\('sigmoid'\): x_zero_point=200"):
        qlinear_table("sigmoid", **{**Q, "x_zero_point": 200})


def test_qlinear_lookup_and_sigmoid_refuse():
    table, sat = qlinear_table("sigmoid", **Q)
    with pytest.raises(FormatError, match="table must hold 256 codes"):
        qlinear_lookup([1], table[:10], sat[:10], I8)
    with pytest.raises(FormatError, match="256 booleans"):
        qlinear_lookup([1], table, sat.astype(np.int64), I8)
    with pytest.raises(FormatError, match=r"qlinear_lookup: x: code -5"):
        qlinear_sigmoid([-5], **{**Q, "fmt": U8})


def test_qlinear_concat_refuses():
    kw = {"y_scale": 0.1, "y_zero_point": 0, "fmt": I8}
    with pytest.raises(FormatError, match="need >= 1 input"):
        qlinear_concat([], scales=[], zero_points=[], axis=0, **kw)
    with pytest.raises(FormatError, match="2 inputs, 1 scales"):
        qlinear_concat([[1], [2]], scales=[0.1], zero_points=[0, 0], axis=0, **kw)
    with pytest.raises(FormatError, match="axis=2 is out of range for rank 1"):
        qlinear_concat([[1]], scales=[0.1], zero_points=[0], axis=2, **kw)
    with pytest.raises(FormatError, match=r"xs\[1\] has shape \(2, 3\)"):
        qlinear_concat([np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64)],
                       scales=[0.1, 0.2], zero_points=[0, 0], axis=0, **kw)
    with pytest.raises(FormatError, match=r"qlinear_concat: xs\[0\] must be an integer array"):
        qlinear_concat([np.zeros(2)], scales=[0.1], zero_points=[0], axis=0, **kw)
    with pytest.raises(FormatError, match=r"scales\[1\] must be finite and > 0"):
        qlinear_concat([[1], [2]], scales=[0.1, 0.0], zero_points=[0, 0], axis=0, **kw)


def test_qlinear_pools_refuse():
    with pytest.raises(FormatError, match=r"qlinear_global_avgpool: x must be NCHW .*\(3, 3\)"):
        qlinear_global_avgpool(np.zeros((3, 3), np.int64), **Q)
    big = np.broadcast_to(np.int64(0), (1, 1, 4096, 4096))  # never copied: refused on shape
    with pytest.raises(FormatError, match=r"H\*W >= 2\*\*24 pixels, got 16777216"):
        qlinear_global_avgpool(big, **Q)
    with pytest.raises(HeadroomError, match="int32 accumulator"):
        qlinear_global_avgpool(np.broadcast_to(np.int64(0), (1, 1, 2902, 2902)), **Q)
    with pytest.raises(FormatError, match=r"\[2\*\*-32, 256\)"):
        qlinear_global_avgpool(X4, **{**Q, "x_scale": 100.0, "y_scale": 0.01})
    with pytest.raises(FormatError, match=r"out of computation range"):
        qlinear_avgpool(X4, (3, 3), **{**Q, "x_scale": 100.0, "y_scale": 0.01})
    with pytest.raises(FormatError, match=r"every pad must be smaller than the kernel"):
        qlinear_avgpool(X4, (2, 2), pads=(2, 0, 0, 0), **Q)
    with pytest.raises(FormatError, match=r"kernel \(3, 4\) does not fit the padded input"):
        qlinear_avgpool(X4, (3, 4), **Q)
    with pytest.raises(FormatError, match="kernel must be 2 integers >= 1"):
        qlinear_avgpool(X4, (0, 1), **Q)


def test_tflite_refuses():
    with pytest.raises(FormatError, match="tflite_add: unknown rounding scheme 'triple'"):
        tflite_add([1], [1], scheme="triple", **ADD)
    with pytest.raises(FormatError, match="tflite_add: fmt must be an integer format of"):
        tflite_add([1], [1], **{**ADD, "fmt": QFormat.parse("fixed<8,3>")})
    with pytest.raises(FormatError, match="tflite_add: unknown fused activation 'gelu'"):
        tflite_add([1], [1], activation="gelu", **ADD)
    with pytest.raises(FormatError, match=r"tflite_add: a and b must have the same shape"):
        tflite_add([1], [1, 2], **ADD)
    with pytest.raises(FormatError, match=r"tflite_add_params: TFLite multiplier .* \(0, 1\)"):
        tflite_add_params(1.0, 1.0, 1e-7)
    with pytest.raises(FormatError, match="tflite_avgpool: activation 'relu' needs the output"):
        tflite_avgpool(X4, (2, 2), fmt=I8, activation="relu")
    with pytest.raises(FormatError, match="does not fit int32"):
        tflite_avgpool(X4, (2, 2), fmt=I8, activation="relu6", scale=1e-38)
    with pytest.raises(FormatError, match="tflite_avgpool: x must be NCHW"):
        tflite_avgpool(np.zeros(3, np.int64), (1, 1), fmt=I8)
    with pytest.raises(FormatError, match=r"tflite_avgpool: kernel \(4, 4\) does not fit"):
        tflite_avgpool(X4, (4, 4), fmt=I8)
    with pytest.raises(FormatError, match=r"covers only padding"):
        tflite_avgpool(X4, (2, 2), pads=(2, 0, 0, 0), fmt=I8)
    with pytest.raises(HeadroomError, match="window sum can leave int32"):
        tflite_avgpool(np.zeros((1, 1, 1, 1), np.int64), (2900, 2900),
                       pads=(1449, 1449, 1450, 1450), fmt=I8)
    mean = {"x_scale": 0.1, "x_zero_point": 0, "y_scale": 0.1, "y_zero_point": 0}
    with pytest.raises(FormatError, match="takes int8 or int16 codes, got ufixed"):
        tflite_mean_hw(X4, fmt=U8, **mean)
    with pytest.raises(FormatError, match="tflite_mean_hw: x must be NCHW"):
        tflite_mean_hw(np.zeros((3, 3), np.int64), fmt=I8, **mean)
    with pytest.raises(HeadroomError, match="sum over 40000 pixels"):
        tflite_mean_hw(np.zeros((1, 1, 200, 200), np.int64), fmt=QFormat.integer(16), **mean)
    with pytest.raises(FormatError, match="zero points 0 for int16, got x_zero_point=3"):
        tflite_mean_hw(X4, fmt=QFormat.integer(16), **{**mean, "x_zero_point": 3})
    with pytest.raises(FormatError, match="multiplier shift 34"):
        tflite_mean_hw(X4, fmt=I8, **{**mean, "x_scale": 1e3, "y_scale": 1e-8})  # 37 - 3
    with pytest.raises(FormatError, match="unknown TFLite fused activation 'tanh'"):
        spec_tflite.activation_range("tanh", 0.1, 0, -128, 127)
