"""Plan settings of a table softmax (hls4ml's ``softmax_stable`` / ``softmax_latency``).

A final Softmax whose :class:`~fxp.plan.plan.LayerPlan` carries
``softmax=SoftmaxTable(...)`` is computed in integers exactly as hls4ml's
C++ computes it (:mod:`fxp.ops.softmax_table`); without it fxp computes a
float softmax.  JSON (a layer key, strictly typed by :mod:`fxp.plan.io`)::

    {"name": "sm", "output": {"format": "ufixed<16,1>"}, "rounding": "floor",
     "output_overflow": "wrap",
     "softmax": {"impl": "hls4ml", "strategy": "stable", "table_size": 1024,
                 "exp_table_t": "ap_fixed<18,8,AP_RND,AP_SAT>",
                 "inv_table_t": "ap_fixed<18,8,AP_RND,AP_SAT>",
                 "inv_inp_t": "ap_fixed<18,8,AP_RND,AP_SAT>",
                 "accum_t": "ap_fixed<18,8,AP_RND,AP_SAT>"}}

Every key but ``impl`` is optional; the defaults are hls4ml 1.3.0's
(``hls4ml/backends/fpga/fpga_backend.py``: implementation ``stable``,
``table_size`` 1024, every table type ``fixed<18,8,RND,SAT>``), checked
against the installed hls4ml by the tests.  Types are written as ``ap_fixed``
/ ``ap_ufixed`` with optional quantization and overflow modes (ap_fixed's
defaults ``AP_TRN``, ``AP_WRAP`` when left out); hls4ml's own spelling
``fixed<18,8,RND,SAT,0>`` is accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FxpError, PlanError

__all__ = ["AP_ROUNDING", "SOFTMAX_IMPLS", "SOFTMAX_STRATEGIES", "ApType", "SoftmaxTable"]

SOFTMAX_IMPLS = ("hls4ml",)
SOFTMAX_STRATEGIES = ("stable", "latency")
MAX_TABLE_SIZE = 1 << 16
"""Largest table accepted (hls4ml's tables live in BRAM/LUTs; 1024 by default)."""

AP_ROUNDING = {RoundingMode.FLOOR: "TRN", RoundingMode.TO_ZERO: "TRN_ZERO",
               RoundingMode.HALF_UP: "RND", RoundingMode.HALF_TO_ZERO: "RND_ZERO",
               RoundingMode.HALF_DOWN: "RND_MIN_INF", RoundingMode.HALF_AWAY: "RND_INF",
               RoundingMode.HALF_EVEN: "RND_CONV"}
"""fxp rounding mode -> ap_fixed quantization mode (without ``AP_``)."""
_AP_OVERFLOW = {OverflowMode.WRAP: "WRAP", OverflowMode.SATURATE: "SAT",
                OverflowMode.SATURATE_SYMMETRIC: "SAT_SYM", OverflowMode.SATURATE_ZERO: "SAT_ZERO"}
_TYPE_RE = re.compile(r"^\s*(?:ap_)?(u?)fixed<\s*(-?\d+)\s*,\s*(-?\d+)\s*"
                      r"(?:,\s*(?:AP_)?([A-Z_]+)\s*)?(?:,\s*(?:AP_)?([A-Z_]+)\s*)?"
                      r"(?:,\s*(\d+)\s*)?>\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ApType:
    """An ``ap_fixed<W,I,Q,O>`` type: a format with its quantization and overflow modes."""

    fmt: QFormat
    rounding: RoundingMode = RoundingMode.FLOOR
    overflow: OverflowMode = OverflowMode.WRAP

    @classmethod
    def parse(cls, text: object, where: str = "type") -> ApType:
        """Parse ``ap_fixed<18,8,AP_RND,AP_SAT>``, ``ap_ufixed<8,0>`` or ``fixed<18,8,RND,SAT,0>``.

        >>> str(ApType.parse("fixed<18,8,RND,SAT,0>"))
        'ap_fixed<18,8,AP_RND,AP_SAT>'

        Raises
        ------
        PlanError
            Not such a type, a mode ap_fixed lacks, or saturation bits other than 0.
        """
        m = _TYPE_RE.match(text) if isinstance(text, str) and len(text) <= 100 else None
        if m is None:
            raise PlanError(f"{where}: expected an ap_fixed type such as "
                            f"'ap_fixed<18,8,AP_RND,AP_SAT>', got {str(text)[:100]!r}")
        u, w, i, q, o, nsat = m.groups()
        if nsat not in (None, "0"):
            raise PlanError(f"{where}: saturation bits {nsat} are not supported (only 0), in "
                            f"{text[:100]!r}")
        try:
            fmt = QFormat(int(w), int(i), not u)
            rounding = RoundingMode.from_string(f"AP_{q.upper()}") if q else RoundingMode.FLOOR
            overflow = OverflowMode.from_string(f"AP_{o.upper()}") if o else OverflowMode.WRAP
        except FxpError as exc:
            raise PlanError(f"{where}: {text[:100]!r}: {exc}") from None
        return cls(fmt, rounding, overflow)

    def __str__(self) -> str:
        return (f"ap_{'' if self.fmt.signed else 'u'}fixed<{self.fmt.bits},{self.fmt.int_bits},"
                f"AP_{AP_ROUNDING[self.rounding]},AP_{_AP_OVERFLOW[self.overflow]}>")

    def hls4ml(self) -> str:
        """hls4ml's config spelling, ``fixed<18,8,RND,SAT>``."""
        return (f"{'' if self.fmt.signed else 'u'}fixed<{self.fmt.bits},{self.fmt.int_bits},"
                f"{AP_ROUNDING[self.rounding]},{_AP_OVERFLOW[self.overflow]}>")


HLS4ML_TABLE_T = ApType(QFormat(18, 8), RoundingMode.HALF_UP, OverflowMode.SATURATE)
"""hls4ml 1.3.0's default exp/inv table, inv_inp and accum type of a Softmax."""

_TYPE_KEYS = ("exp_table_t", "inv_table_t", "inv_inp_t", "accum_t")
KEYS = ("impl", "strategy", "table_size", *_TYPE_KEYS)
"""Keys of the JSON object."""


@dataclass(frozen=True)
class SoftmaxTable:
    """A table softmax in hls4ml's arithmetic (see :mod:`fxp.ops.softmax_table`).

    Attributes
    ----------
    impl : {"hls4ml"}
        Whose arithmetic.
    strategy : {"stable", "latency"}
        hls4ml's ``Implementation``: ``stable`` indexes the exp table with
        ``max(x) - x``; ``latency`` with ``x`` itself.
    table_size : int
        hls4ml's ``TableSize`` (a power of two, 2..65536), before hls4ml
        shrinks it to fit the input and table widths.
    exp_table_t, inv_table_t, inv_inp_t, accum_t : ApType
        hls4ml's table, inverse-input and accumulator types.
    """

    impl: str = "hls4ml"
    strategy: str = "stable"
    table_size: int = 1024
    exp_table_t: ApType = HLS4ML_TABLE_T
    inv_table_t: ApType = HLS4ML_TABLE_T
    inv_inp_t: ApType = HLS4ML_TABLE_T
    accum_t: ApType = HLS4ML_TABLE_T

    def __post_init__(self) -> None:
        if self.impl not in SOFTMAX_IMPLS:
            raise PlanError(f"softmax impl must be one of {SOFTMAX_IMPLS}, got "
                            f"{str(self.impl)[:40]!r}")
        if self.strategy not in SOFTMAX_STRATEGIES:
            raise PlanError(f"softmax strategy must be one of {SOFTMAX_STRATEGIES}, got "
                            f"{str(self.strategy)[:40]!r}")
        ts = self.table_size
        if isinstance(ts, bool) or not isinstance(ts, int) or not 2 <= ts <= MAX_TABLE_SIZE \
                or ts & (ts - 1):
            raise PlanError(f"softmax table_size must be a power of two in 2..{MAX_TABLE_SIZE}, "
                            f"got {str(ts)[:40]!r}")
        for key in _TYPE_KEYS:
            t = getattr(self, key)
            if isinstance(t, str):
                object.__setattr__(self, key, ApType.parse(t, f"softmax {key}"))
            elif not isinstance(t, ApType):
                raise PlanError(f"softmax {key} must be an ap_fixed type, got {str(t)[:80]!r}")

    def to_dict(self) -> dict:
        """The JSON object (every key written)."""
        return {"impl": self.impl, "strategy": self.strategy, "table_size": self.table_size,
                **{key: str(getattr(self, key)) for key in _TYPE_KEYS}}

    @classmethod
    def from_dict(cls, d: object, where: str = "softmax") -> SoftmaxTable:
        """Strictly read the JSON object (unknown keys, wrong JSON types: PlanError)."""
        if not isinstance(d, dict):
            raise PlanError(f"{where}: expected an object with 'impl', got "
                            f"{type(d).__name__}")
        extra = set(d) - set(KEYS)
        if extra:
            raise PlanError(f"{where}: unknown keys {sorted(map(str, extra))[:10]} (allowed: "
                            f"{list(KEYS)})")
        if "impl" not in d:
            raise PlanError(f"{where}: missing 'impl' (one of {SOFTMAX_IMPLS})")
        for key in ("impl", "strategy", *_TYPE_KEYS):
            if key in d and not isinstance(d[key], str):
                raise PlanError(f"{where}: {key!r} must be a string, got {str(d[key])[:80]!r}")
        if "table_size" in d and type(d["table_size"]) is not int:
            raise PlanError(f"{where}: 'table_size' must be an integer, got "
                            f"{str(d['table_size'])[:80]!r}")
        kw = {key: ApType.parse(d[key], f"{where} {key}") if key in _TYPE_KEYS else d[key]
              for key in KEYS if key in d}
        try:
            return cls(**kw)
        except PlanError as exc:
            raise PlanError(f"{where}: {exc}") from None
