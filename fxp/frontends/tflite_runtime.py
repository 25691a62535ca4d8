"""Runtime profiles of a ``.tflite`` model: which runtime's integers the plan reproduces.

One full-integer ``.tflite`` file gives different integers on different
runtimes: the runtimes round differently.  :func:`fxp.frontends.tflite.load_tflite`
takes ``runtime=`` one of :data:`RUNTIMES` (default ``"tflm"``) and writes,
per layer, the ``requant`` scheme that runtime uses for that operator
(:class:`~fxp.plan.tensor_spec.RequantScheme`; the engine dispatches on it:
:mod:`fxp.sim.compile`, :mod:`fxp.sim.integer`, :mod:`fxp.sim.residual_runtime`).
The profile's name is recorded in the plan name (``"tflite-int8@xnnpack"``)
and in ``graph.metadata["fxp.tflite.runtime"]``.

Measured (``tests/frontends/test_tflite_runtimes.py``) against
``ai-edge-litert`` 2.3.0 on x86-64 (AVX-512): every tensor of the six
committed models (``models/tflite``), fxp run end to end from the input
codes of 1,000 ``mnist5k`` digits, 0 differing
elements for ``litert-ref``, ``litert-opt`` and ``xnnpack``; and one-operator
models built for the kernels those models cannot separate (int8 SOFTMAX, ADD
on every code pair, keep-dims MEAN, DEPTHWISE_CONV_2D without activation).
Sources read: google-ai-edge/LiteRT f674577 (``tflite/``), google/ruy
2af8886, google/XNNPACK 75db3c0, ARM-software/CMSIS-NN 99f736a (the LiteRT
2.3.0 wheel pins its own commits of these; where a source and a measurement
disagreed -- the NEON paths compiled on x86 -- the measurement decided and the
text says so).

============================  ==========  ==========  ==========  ==========  ==========
operator (int8)               tflm        litert-ref  litert-opt  xnnpack     cmsis-nn
============================  ==========  ==========  ==========  ==========  ==========
CONV_2D                       double      double      ruy         xnnpack     double
DEPTHWISE_CONV_2D             double      double      ruy [1]     xnnpack     double
FULLY_CONNECTED               double      float64     ruy         xnnpack     double
ADD                           double      double      ruy [3]     xnnpack     double
MEAN (H, W)                   double      double      double      xnnpack     double
MEAN (H, W), keep_dims        double      double      ruy [2]     xnnpack     double
SOFTMAX                       double      float64     ruy         ruy         double
AVERAGE_POOL_2D, others       double      double      double      double      double
============================  ==========  ==========  ==========  ==========  ==========

[1] whole blocks of 8 output channels ``ruy``, the remaining ``C % 8`` channels
``double`` (:func:`fxp.kernels.spec_runtime_requant.litert_block_variants`).
[2] blocks of 16 channels ``ruy``, the rest ``double``
(:func:`fxp.ops.litert.litert_mean_hw_keepdims`).
[3] LiteRT's optimized ADD: blocks of 16 elements with the input shift folded
into one rounding, the rest as TFLM (:func:`fxp.ops.litert.litert_add`).

int16x8 (16-bit activations): ``double`` everywhere (TFLite's int64
``MultiplyByQuantizedMultiplier`` with a 16-bit multiplier for the weighted
layers), except FULLY_CONNECTED ``float64`` and SOFTMAX ``float64`` / ``ruy``
(int16: the same kernel) in the three LiteRT profiles.  XNNPACK takes no
int16 operator: the ``xnnpack`` profile is ``litert-opt`` there.  int16 ADD is
TFLM's arithmetic in every profile (left shift 15, :mod:`fxp.kernels.spec_tflite`):
LiteRT's ``add.cc`` takes the same general-scale path when the model's
``pot_scale_int16`` is false, as in the converter's int16x8 output (measured:
``residual_mean_int16x8``, 3,136,000 ADD outputs, 0 differing in all three
profiles); with ``pot_scale_int16`` true and power-of-two scales LiteRT would
take its power-of-two path instead, which fxp does not model (TFLM never does).

What each scheme is, per runtime:

* ``tflm`` -- TFLite Micro's reference kernels: gemmlowp double rounding
  (``double``), the schemes of :mod:`fxp.frontends.tflite`; checked against
  the ``tflite-micro`` interpreter (``tests/frontends/test_tflite_import.py``).
* ``litert-ref`` -- LiteRT, ``OpResolverType.BUILTIN_REF``.  CONV_2D and
  DEPTHWISE_CONV_2D call ``reference_integer_ops::ConvPerChannel`` /
  ``DepthwiseConvPerChannel`` with ``MultiplyByQuantizedMultiplier``
  (``internal/common.h``; this build does not define ``TFLITE_SINGLE_ROUNDING``):
  TFLM's integers.  FULLY_CONNECTED calls the overloads taking float scales
  (``kernels/fully_connected.cc`` lines 1270-1276, 1401-1412, 1502-1515;
  ``internal/reference/integer_ops/fully_connected.h`` lines 117-123,
  221-225): ``int32(round(double(acc) * (double(s_x) * double(s_w) /
  double(s_y))))`` -- ``float64``, :mod:`fxp.kernels.spec_runtime_requant`.
  (The issue called this single rounding: it is a double-precision float
  scale rounded half away from zero; on the committed models it differs from
  TFLM exactly where single rounding does.)  SOFTMAX int8 is TFLM's gemmlowp
  kernel; int16 builds its two tables in double (``activations.cc`` lines
  608-645, ``internal/common.h`` ``LUTPopulateInt16<double>``):
  :mod:`fxp.kernels.spec_litert_softmax`.  ADD, AVERAGE_POOL_2D, MEAN
  (``reference_ops::QuantizedMeanOrSum``, ``reduce.cc`` lines 604-660) are
  TFLM's.
* ``litert-opt`` -- LiteRT, ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (the
  optimized kernels, XNNPACK off), on x86-64.  CONV_2D (im2col +
  ``cpu_backend_gemm``) and int8 FULLY_CONNECTED go to ruy
  (``cpu_backend_gemm_x86.h``: int8 GEMMs use ruy), whose AVX2/AVX-512 kernels
  requantize with two roundings both tied toward +inf (``ruy/kernel_avx2_fma.cc``
  lines 355-525): ``ruy``.  DEPTHWISE_CONV_2D is ``DepthwiseConvGeneral`` (the
  3x3 kernels are aarch64-only, ``optimized/integer_ops/depthwise_conv.h``
  lines 1826-1880) ending in ``optimized_ops::Quantize`` (``optimized_ops.h``
  lines 5168-5256): blocks of 8 channels in its ``USE_NEON`` path, which x86
  builds compile through ``NEON_2_SSE`` (``neon_check.h``) and which measures
  as ``ruy``'s integers, the remaining channels with
  ``MultiplyByQuantizedMultiplier`` (``double``); fxp applies this split to a
  ``ruy`` Conv2D whose groups each take one input channel.  int16x8
  FULLY_CONNECTED with int64 bias takes the reference float-scale kernel
  (``fully_connected.cc`` lines 1754-1760): ``float64``; int16x8 convolutions
  TFLM's int64 kernel.  MEAN with ``keep_dims`` over H, W of a 4-D int8
  tensor is ``optimized_integer_ops::Mean`` (``reduce.cc`` lines 756-775,
  ``optimized/integer_ops/mean.h`` lines 200-220): its own zero-point bias
  and multiplier in float32 and the same 16-channel NEON / scalar split --
  ``ruy`` on a GlobalAvgPool, :func:`fxp.ops.litert.litert_mean_hw_keepdims`;
  other MEANs are the reference kernel.  SOFTMAX int8 is
  ``optimized_ops::Softmax``, a float32 exp table (``optimized_ops.h`` lines
  3504-3567; ``TFLITE_SOFTMAX_USE_UINT16_LUT`` is aarch64-only); int16 as
  ``litert-ref``.  ADD int8 (``AddElementwiseInt8``,
  ``optimized/integer_ops/add.h`` lines 36-165) runs whole blocks of 16
  elements through its NEON path, which folds the input shift into the left
  shift (one rounding instead of TFLM's two) -- ``ruy`` on an Add,
  :func:`fxp.ops.litert.litert_add` -- and the rest through TFLM's scalar
  loop.  The pools (``(acc +- n/2) / n``, ``optimized/integer_ops/pooling.h``
  lines 245-255) are TFLM's.  These are the x86-64 paths; an aarch64 build
  runs other kernels (the 3x3 depthwise kernels, ruy's NEON kernels) that fxp
  does not model.
* ``xnnpack`` -- LiteRT's default resolver (``OpResolverType.AUTO`` /
  ``BUILTIN``) with the XNNPACK delegate.  Int8 CONV_2D, DEPTHWISE_CONV_2D and
  FULLY_CONNECTED requantize in float32: ``rint(f32(acc) * scale)`` with
  ``scale = f32(f32(s_x * s_w[c]) / s_y)`` (``src/operators/convolution-nhwc.c``
  lines 1068-1100, ``fully-connected-nc.c`` lines 934-970), clamped in float32
  to bounds quantized by ``xnn_qs8_quantize`` (``lrintf``; ties to even) --
  ``xnnpack``, the arithmetic of ``float32`` with XNNPACK's clamp bounds
  (:func:`fxp.ops.xnnpack.xnnpack_act_bounds`).  ADD and MEAN are XNNPACK's own
  (:mod:`fxp.kernels.spec_xnnpack`).  The delegate refuses quantized
  AVERAGE_POOL_2D and SOFTMAX (``xnnpack_delegate.cc`` lines 3506-3521,
  6022-6045): LiteRT's optimized kernels run them (SOFTMAX ``ruy``).
  ``experimental_preserve_all_tensors`` makes the delegate take one operator
  per partition; in a normal run XNNPACK fuses nothing that changes these
  integers as far as the sources read show (not measured).
* ``cmsis-nn`` -- TFLite Micro with the Arm CMSIS-NN kernels, default build
  (no ``CMSIS_NN_USE_SINGLE_ROUNDING``, no ``CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY``;
  the CMSIS-NN README asks TFLM to be built with the matching flag).  Based on
  the source only -- NOT MEASURED, no CMSIS-NN runtime runs here:
  ``Include/arm_nnsupportfunctions.h`` ``arm_nn_requantize`` (lines 1685-1710)
  is ``arm_nn_divide_by_power_of_two(arm_nn_doubling_high_mult_no_sat(x << l, M), r)``;
  the high multiply ``(2**30 + x*M) >> 31`` (lines 1568-1608) rounds its ties
  toward +inf exactly as gemmlowp's nudge-and-truncate SRDHM does (no
  saturation case: ``M >= 0``), and the division (lines 1619-1660) is
  RoundingDivideByPOT -- TFLM's integers for every int32 input
  (``tests/kernels/test_runtime_requant.py`` checks the two transcriptions
  equal).  So CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and ADD
  (``arm_elementwise_add_s8.c``: TFLite's ADD with ``arm_nn_requantize``) are
  ``double``; the int16x8 layers use ``arm_nn_requantize_s64`` with
  ``REDUCE_MULTIPLIER`` (lines 57, 1722-1732), TFLM's int64 kernel below
  ``2**47``; AVERAGE_POOL_2D rounds as TFLM (``arm_avgpool_s8.c`` lines
  42-51); SOFTMAX follows gemmlowp's steps with TFLM's tables
  (``arm_nn_softmax_common_s8.c``, ``arm_softmax_s16.c``); MEAN has no CMSIS-NN
  kernel.  The profile is therefore ``tflm``'s arithmetic under its own name.
  A build with ``CMSIS_NN_USE_SINGLE_ROUNDING`` (and TFLM's
  ``TFLITE_SINGLE_ROUNDING``) is ``single``: edit the plan.

Not modelled per runtime (the profile keeps TFLM's ``double`` and says so in
:func:`runtime_notes`): LOGISTIC, TANH, HARD_SWISH, MUL, PAD, QUANTIZE,
CONCATENATION and a requantizing RELU under LiteRT / XNNPACK / CMSIS-NN (no
committed model has them; LiteRT's optimized LOGISTIC and TANH use tables).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from fxp.errors import PlanError

__all__ = ["RUNTIMES", "RUNTIME_KEY", "RuntimeProfile", "apply_runtime", "get_runtime",
           "runtime_notes"]

RUNTIME_KEY = "fxp.tflite.runtime"
"""Graph metadata key: the runtime profile the plan was built for."""


@dataclass(frozen=True)
class RuntimeProfile:
    """Per-operator ``requant`` schemes of one runtime (see the module docstring).

    Attributes
    ----------
    name : str
        One of :data:`RUNTIMES`.
    description : str
        What runs: the runtime, its resolver or build flags, the platform.
    int8, int16 : dict
        TFLite operator name (``"MEAN_KEEPDIMS"`` for a ``keep_dims`` MEAN) ->
        requant scheme, for int8 and int16x8 operators; an operator not listed
        keeps ``"double"``.
    measured : bool
        Whether the profile is checked against the runtime (``cmsis-nn`` is not).
    """

    name: str
    description: str
    int8: dict
    int16: dict
    measured: bool = True

    def scheme(self, op: str, bits: int) -> str:
        """The requant scheme of TFLite operator ``op`` with ``bits``-wide activations."""
        return (self.int8 if bits == 8 else self.int16).get(op, "double")


_LITERT_INT16 = {"FULLY_CONNECTED": "float64", "SOFTMAX": "float64"}
_PROFILES = {p.name: p for p in (
    RuntimeProfile("tflm", "TFLite Micro reference kernels (gemmlowp double rounding)", {}, {}),
    RuntimeProfile("litert-ref", "LiteRT OpResolverType.BUILTIN_REF (reference kernels)",
                   {"FULLY_CONNECTED": "float64", "SOFTMAX": "float64"}, _LITERT_INT16),
    RuntimeProfile("litert-opt", "LiteRT BUILTIN_WITHOUT_DEFAULT_DELEGATES (optimized kernels, "
                   "ruy; XNNPACK off), x86-64",
                   {"CONV_2D": "ruy", "DEPTHWISE_CONV_2D": "ruy", "FULLY_CONNECTED": "ruy",
                    "ADD": "ruy", "MEAN_KEEPDIMS": "ruy", "SOFTMAX": "ruy"},
                   {**_LITERT_INT16, "SOFTMAX": "ruy"}),
    RuntimeProfile("xnnpack", "LiteRT OpResolverType.AUTO / BUILTIN with the XNNPACK delegate "
                   "(int8: XNNPACK's fp32 requantization), x86-64",
                   {"CONV_2D": "xnnpack", "DEPTHWISE_CONV_2D": "xnnpack",
                    "FULLY_CONNECTED": "xnnpack", "ADD": "xnnpack", "MEAN": "xnnpack",
                    "MEAN_KEEPDIMS": "xnnpack", "SOFTMAX": "ruy"},
                   {**_LITERT_INT16, "SOFTMAX": "ruy"}),
    RuntimeProfile("cmsis-nn", "TFLite Micro with Arm CMSIS-NN kernels, default build (double "
                   "rounding: TFLM's integers); from the source, not measured", {}, {},
                   measured=False),
)}
RUNTIMES = tuple(_PROFILES)
"""Profile names: ``tflm`` (default), ``litert-ref``, ``litert-opt``, ``xnnpack``, ``cmsis-nn``."""
_MODELLED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "SOFTMAX",
             "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "RELU", "RELU6", "RELU_N1_TO_1"}
"""Operators whose arithmetic each profile states (RELUs: a clamp on the same coding)."""


def get_runtime(name: str | RuntimeProfile) -> RuntimeProfile:
    """The profile called ``name``.

    Raises
    ------
    PlanError
        An unknown name (the message names it and lists :data:`RUNTIMES`).
    """
    if isinstance(name, RuntimeProfile):
        return name
    key = str(name).strip().lower() if isinstance(name, str) else None
    if key not in _PROFILES:
        raise PlanError(f"unknown TFLite runtime profile {str(name)[:80]!r}; choose one of "
                        f"{list(RUNTIMES)}")
    return _PROFILES[key]


def _ops(graph) -> list:
    from fxp.frontends.tflite import OPS_KEY

    raw = graph.metadata.get(OPS_KEY)
    if raw is None:
        raise PlanError(f"graph {graph.name!r} was not read by load_tflite (no {OPS_KEY!r} "
                        f"metadata); runtime profiles apply to .tflite models")
    return json.loads(raw)


def _op_kind(record: list) -> str:
    name, nodes = record[1], record[2]
    return "MEAN_KEEPDIMS" if name == "MEAN" and len(nodes) == 1 else name


def apply_runtime(graph, plan, runtime: str | RuntimeProfile = "tflm"):
    """``(graph, plan)`` for ``runtime``: each layer's ``requant`` as the profile says, the
    profile recorded in the plan name and the graph metadata.

    ``plan`` is the TFLM plan :func:`fxp.frontends.tflite.load_tflite` builds
    (every layer ``"double"``); the activation width of an operator is that of
    its output coding.

    Raises
    ------
    PlanError
        An unknown profile, or a graph not read from a ``.tflite`` file.
    """
    from fxp.ir.graph import Graph

    profile = get_runtime(runtime)
    layers = {lp.name: lp for lp in plan.layers}
    for record in _ops(graph):
        for node in record[2]:
            lp = layers.get(node)
            if lp is None or lp.output is None:
                continue
            scheme = profile.scheme(_op_kind(record), lp.output.fmt.bits)
            if scheme != lp.requant.value:
                layers[node] = lp.with_(requant=scheme)
    base = plan.name.split("@")[0]
    new_plan = replace(plan, layers=tuple(layers[lp.name] for lp in plan.layers),
                       name=f"{base}@{profile.name}")
    meta = {**graph.metadata, RUNTIME_KEY: profile.name}
    new_graph = Graph(nodes=graph.nodes, inputs=graph.inputs, input_shapes=graph.input_shapes,
                      outputs=graph.outputs, metadata=meta, name=graph.name)
    return new_graph, new_plan


def runtime_notes(graph) -> list[str]:
    """One line per fact a user should know about the numbers of ``graph``'s runtime profile:
    the profile, whether it is measured, and the operators it keeps as TFLite Micro's."""
    name = graph.metadata.get(RUNTIME_KEY)
    if name is None:
        return []
    profile = get_runtime(name)
    notes = [f"runtime {profile.name}: {profile.description}"]
    if not profile.measured:
        notes.append(f"runtime {profile.name}: based on the kernel sources, not measured "
                     f"against the runtime")
    other = sorted({r[1] for r in _ops(graph)} - _MODELLED)
    if other and profile.name != "tflm":
        notes.append(f"runtime {profile.name}: {', '.join(other)} computed as TFLite Micro "
                     f"(not modelled for this runtime)")
    return notes
