"""The ``fxp`` command line: thin handlers over the library.

Every handler parses its arguments, calls one library function, prints or
writes, and returns an exit code.  Any :class:`~fxp.errors.FxpError` becomes one
line on stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fxp.errors import FxpError

EXAMPLES = """examples:
  fxp format "ap_fixed<8,3>"          describe a fixed-point format
  fxp format Q0.15 --json             the same, as JSON
  fxp quantize "fixed<8,4>" 0.3 -1.7 --rounding half_even --overflow saturate
"""


def _cmd_format(args: argparse.Namespace) -> int:
    from fxp.core.format import QFormat

    fmt = QFormat.parse(args.format)
    try:
        qmn = fmt.to_qmn()
    except FxpError:
        qmn = None
    info = {
        "format": str(fmt),
        "ap_fixed": fmt.to_ap_fixed(),
        "qmn": qmn,
        "bits": fmt.bits,
        "int_bits": fmt.int_bits,
        "frac_bits": fmt.frac_bits,
        "signed": fmt.signed,
        "lsb": str(fmt.lsb),
        "min_code": fmt.min_code,
        "max_code": fmt.max_code,
        "min_value": str(fmt.min_value),
        "max_value": str(fmt.max_value),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from fxp.core.format import QFormat
    from fxp.ops.fixed import dequantize, quantize

    fmt = QFormat.parse(args.format)
    codes, n = quantize(args.values, fmt, args.rounding, args.overflow, seed=args.seed)
    values = dequantize(codes, fmt)
    if args.json:
        print(json.dumps({"format": str(fmt), "codes": codes.tolist(),
                          "values": values.tolist(), "n_overflow": n}))
    else:
        for x, c, v in zip(args.values, codes.tolist(), values.tolist()):
            print(f"{x!r:>24} -> code {c:>8}  value {v!r}")
        print(f"overflows: {n}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="fxp",
        description="Bit-exact fixed-point simulation and bit-width planning for CNNs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("format", help="describe a fixed-point format (ap_fixed<W,I>, Qm.n, ...)")
    p.add_argument("format", help="e.g. 'ap_fixed<8,3>', 'ufixed<6,2>', 'Q0.15', 'int8'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_format)

    p = sub.add_parser("quantize", help="quantize real numbers into a format")
    p.add_argument("format")
    p.add_argument("values", nargs="+", type=float)
    p.add_argument("--rounding", default="half_even", help="rounding mode (default half_even)")
    p.add_argument("--overflow", default="saturate", help="overflow mode (default saturate)")
    p.add_argument("--seed", type=int, default=None, help="seed for stochastic rounding")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except FxpError as exc:
        if args.debug:
            raise
        print(f"fxp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
