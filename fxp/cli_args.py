"""Argument types and the error boundary of the ``fxp`` command line.

Every numeric option has an explicit type with its range (:func:`int_range`,
:func:`positive_int`, :func:`bits`, :func:`finite_float`, :func:`width_list`),
so a bad value (``--weight-bits 0``, ``--calib -1``, ``--target-sqnr nan``) is
a one-line usage error with exit code 2 (:class:`Parser`), never replaced by a
default or narrowed into range.  :func:`run_handler` turns what a handler
raises into one line on stderr.

>>> positive_int("3"), bits(1, 64)("64"), finite_float(0, 100)("0.5")
(3, 64, 0.5)
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable

from fxp.errors import FxpError

__all__ = ["Parser", "bits", "finite_float", "int_range", "one_line", "os_error_line",
           "positive_int", "prepare_output", "run_handler", "width_list"]


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: a decimal integer in ``lo..hi`` (``hi`` None: no upper bound).

    Anything else (``"0"`` for ``int_range(1)``, ``"1.5"``, ``"8x"``, a 30-digit
    number) is a one-line usage error; no value is ever replaced by a default.
    """
    rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"

    def parse(text: str) -> int:
        t = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", t):
            raise argparse.ArgumentTypeError(f"expected an integer {rng}, got {text[:40]!r}")
        v = int(t)
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, got {v}")
        return v

    parse.__name__ = f"int {rng}"
    return parse


positive_int = int_range(1)
"""argparse type: an integer >= 1 (counts, batch sizes, limits)."""


def bits(lo: int = 1, hi: int = 64) -> Callable[[str], int]:
    """argparse type: a word length in bits, ``lo..hi``."""
    return int_range(lo, hi)


def finite_float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite decimal number in the given range (``nan``/``inf`` refused)."""
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    rng = (f"{left}{'-inf' if lo is None else f'{lo:g}'}, "
           f"{'inf' if hi is None else f'{hi:g}'}{right}")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {rng}, got "
                                             f"{text[:40]!r}") from None
        ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and \
            (hi is None or (v < hi if hi_open else v <= hi))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {rng}, got "
                                             f"{text[:40]!r}")
        return v

    parse.__name__ = f"number in {rng}"
    return parse


def _confidence(text: str) -> float:
    """argparse type of ``--confidence``: 0, or a probability in [0.5, 1)."""
    v = finite_float(0, 1, hi_open=True)(text)
    if v != 0 and v < 0.5:
        raise argparse.ArgumentTypeError(f"must be 0 (no margin) or in [0.5, 1), got "
                                         f"{text[:40]!r}")
    return v


def _split_seed(text: str) -> int | str:
    """argparse type of ``--split-seed``: an integer >= 0, or ``none``."""
    if text.strip().lower() == "none":
        return "none"
    return int_range(0, 2**63 - 1)(text)


def width_list(text: str) -> str:
    """argparse type of ``sweep --bits``: ``"2-16"`` or ``"2,4,8"``, widths in 1..32."""
    t = text.strip()
    if not re.fullmatch(r"[0-9]{1,2}(-[0-9]{1,2})?(,[0-9]{1,2}(-[0-9]{1,2})?)*", t):
        raise argparse.ArgumentTypeError(f"expected widths like '2-16' or '2,4,8', got "
                                         f"{text[:40]!r}")
    for part in t.split(","):
        lo, _, hi = part.partition("-")
        if not 1 <= int(lo) <= int(hi or lo) <= 32:
            raise argparse.ArgumentTypeError(f"widths must be in 1..32 (and ranges "
                                             f"increasing), got {part!r}")
    return t


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (still exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` with line breaks collapsed to spaces, cut at ``limit`` characters."""
    line = re.sub(r"\s*[\r\n\v\f]+\s*", " ", str(text)).strip()
    return line if len(line) <= limit else line[:limit] + "..."


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                where: str, *, debug: bool = False) -> int:
    """Run a CLI handler; every failure becomes one line on stderr and an exit code.

    :class:`~fxp.errors.FxpError` (newlines in its message collapsed), an
    :class:`OSError` that escaped a reader or writer (naming the file), and
    :class:`MemoryError` give exit code 2; ``KeyboardInterrupt`` gives 130.
    ``debug=True`` re-raises instead (the traceback).
    """
    try:
        return int(handler(args))
    except FxpError as exc:
        if debug:
            raise
        print(f"{where}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(f"{where}: error: out of memory while running {where} (try a smaller "
              "--batch-size or --limit)", file=sys.stderr)
        return 2
    except OSError as exc:  # a reader or writer that did not name its file itself
        if debug:
            raise
        print(f"{where}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: what failed, on which file (cut to 200 characters)."""
    why = exc.strerror or one_line(str(exc), 200) or type(exc).__name__
    if exc.filename is None:
        return f"input/output error: {why}"
    name = str(exc.filename)
    return f"cannot access {name[:200] + ('...' if len(name) > 200 else '')!r}: {why}"


def prepare_output(path: str, *, folder: bool) -> None:
    """Fail fast on an ``--out`` that cannot be written, before any slow work.

    Creates the output folder (``folder=True``) or the file's parent folder;
    raises :class:`~fxp.errors.OutputError` (one line, naming the path) when that
    is impossible or when a file output names an existing folder.
    """
    from pathlib import Path

    from fxp.errors import OutputError
    from fxp.fileio import ensure_dir

    p = Path(path)
    if folder:
        ensure_dir(p)
        return
    ensure_dir(p.parent)
    try:
        is_dir = p.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise OutputError(f"cannot write {str(p)[:200]!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None
    if is_dir:
        raise OutputError(f"output file {str(p)[:200]!r} is a folder")


# ------------------------------------------------------------------ fxp plan: hardware options
PLAN_COSTS = ("weight_memory", "activation_memory", "bitops", "lut", "dsp", "bram", "area",
              "flash", "cycles")
"""``fxp plan --cost`` choices (:mod:`fxp.opt.hardware` for the hardware ones)."""
TARGET_DEFAULT_COST = {None: "weight_memory", "fpga": "area", "mcu": "flash"}
_BUDGET_OPTIONS = (("dsp", "DSP slices"), ("lut", "LUTs"), ("bram", "BRAM18 blocks"),
                   ("flash", "bytes of flash (weights + biases)"),
                   ("ram", "bytes of peak activation RAM (TFLite Micro arena head)"))


def add_hardware_options(p: argparse.ArgumentParser) -> None:
    """``--target``, ``--cost-file``, ``--max-*`` budgets, ``--reuse-factor``, ``--acc-saturate``.

    Also ``--scheduler`` / ``--workers`` (:func:`add_cluster_options`): where the
    optimizer's noise table is measured.
    """
    p.add_argument("--target", default=None, choices=["fpga", "mcu"],
                   help="hardware profile: fpga (LUT/DSP/BRAM18 cost, default cost area) or mcu "
                        "(int kernels only: weights 4/8, activations 8/16 bits; default cost "
                        "flash); see fxp/opt/hw_costs.json")
    p.add_argument("--cost-file", default=None, metavar="JSON",
                   help="hardware cost coefficients (a copy of fxp/opt/hw_costs.json)")
    for name, what in _BUDGET_OPTIONS:
        p.add_argument(f"--max-{name}", type=int_range(0), default=None, metavar="N",
                       help=f"budget: at most N {what}; without --target-sqnr the SQNR is "
                            "maximised under the budgets")
    p.add_argument("--reuse-factor", type=positive_int, default=None, metavar="R",
                   help="FPGA reuse factor of every layer (default: the cost file's)")
    p.add_argument("--acc-saturate", type=bits(2, 64), default=None, metavar="BITS",
                   help="narrow accumulators wider than BITS to BITS with saturation (default: "
                        "the narrowest width that provably cannot overflow)")
    p.add_argument("--interactions", default=None, choices=["check", "milp", "off"],
                   help="pairwise noise interactions: check each optimum against them and "
                        "search locally (check, the default) or solve the exact second-order "
                        "MILP (milp: cheaper plans, more often short on held-out data; see "
                        "reports/optimizer_fidelity); off: the additive model alone (no pair "
                        "passes, about 2 minutes less on the reference CNNs)")
    p.add_argument("--margin-se", type=finite_float(0, 10), default=None, metavar="Z",
                   help="the plan's second-order prediction must reach the target plus Z of "
                        "its standard errors (calibration-sample spread; default 0)")
    p.add_argument("--calibration-check", default=None, choices=["on", "off"],
                   help="measure each searched plan with the integer engine on the "
                        "calibration split and keep the cheapest that meets the target there "
                        "(on, the default; see fxp/opt/measured_goal.py)")
    p.add_argument("--confidence", type=_confidence, default=None, metavar="P",
                   help="the calibration measurement must clear the target by the one-sided "
                        "P bound on what the held-out split measures (from its standard "
                        "error; default 0.95, 0: no margin)")
    p.add_argument("--jumps", type=int_range(0, 100), default=None, metavar="N",
                   help="most calibration measurements of the prediction jump per goal "
                        "(best-predicted plans at least 2%% cheaper, however far; default 4, "
                        "0: skip it for a faster search; see fxp/opt/prediction_jump.py)")
    p.add_argument("--split-seed", type=_split_seed, default=None, metavar="N|none",
                   help="seed of the random order --data is split in (default 0); none: "
                        "the data's own order (see fxp/opt/splits.py)")
    p.add_argument("--per-channel-weights", action="store_true",
                   help="one weight width per output channel (exact MILP over channels x "
                        "widths, cost weight memory; needs --target-sqnr; the same splits, "
                        "--calibration-check, --confidence and --split-seed); see "
                        "fxp/opt/channel_optimize.py")
    p.add_argument("--channel-groups", type=positive_int, default=None, metavar="G",
                   help="with --per-channel-weights: G groups of channels per layer share a "
                        "width (channels sorted by sensitivity)")
    add_cluster_options(p, batches=False)  # the noise table on Dask (fxp/dist/noise.py)


def hardware_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`fxp.workflow.optimize_plan` from the options above."""
    budgets = {name: getattr(args, f"max_{name}") for name, _ in _BUDGET_OPTIONS
               if getattr(args, f"max_{name}") is not None}
    kw = {"target": args.target, "cost_file": args.cost_file, "budgets": budgets,
          "reuse_factor": args.reuse_factor, "acc_saturate": args.acc_saturate}
    if getattr(args, "interactions", None) is not None:
        kw["interactions"] = {"milp": "milp", "off": False}.get(args.interactions, True)
    if getattr(args, "margin_se", None) is not None:
        kw["margin_se"] = args.margin_se
    if getattr(args, "calibration_check", None) is not None:
        kw["calibration_check"] = args.calibration_check == "on"
    if getattr(args, "confidence", None) is not None:
        kw["confidence"] = args.confidence
    if getattr(args, "split_seed", None) is not None:
        kw["split_seed"] = None if args.split_seed == "none" else args.split_seed
    if getattr(args, "jumps", None) is not None:
        kw["jumps"] = args.jumps
    return kw


def check_hardware_options(args: argparse.Namespace, optimized: bool) -> None:
    """Refuse optimizer-only options on a plan that is not optimized (never ignore them)."""
    from fxp.errors import PlanError

    given = [opt for opt, v in (("--target", args.target), ("--cost", args.cost),
                                ("--cost-file", args.cost_file),
                                ("--reuse-factor", args.reuse_factor),
                                ("--acc-saturate", args.acc_saturate),
                                ("--interactions", getattr(args, "interactions", None)),
                                ("--margin-se", getattr(args, "margin_se", None)),
                                ("--calibration-check",
                                 getattr(args, "calibration_check", None)),
                                ("--confidence", getattr(args, "confidence", None)),
                                ("--jumps", getattr(args, "jumps", None)),
                                ("--split-seed", getattr(args, "split_seed", None)))
             if v is not None]
    given += [opt for opt, v in (("--scheduler", getattr(args, "scheduler", None)),
                                 ("--workers", getattr(args, "workers", None))) if v is not None]
    if given and not optimized:
        raise PlanError(f"{', '.join(given)} apply to optimized plans: give --target-sqnr, "
                        f"--max-accuracy-drop or a --max-* budget")
    if getattr(args, "channel_groups", None) is not None and \
            not getattr(args, "per_channel_weights", False):
        raise PlanError(f"--channel-groups {args.channel_groups} needs --per-channel-weights")
    if getattr(args, "per_channel_weights", False):
        other = [opt for opt, v in (("--target", args.target), ("--cost", args.cost),
                                    ("--acc-saturate", args.acc_saturate),
                                    ("--interactions", getattr(args, "interactions", None)),
                                    ("--margin-se", getattr(args, "margin_se", None)),
                                    ("--jumps", getattr(args, "jumps", None)),
                                    ("--max-accuracy-drop",
                                     getattr(args, "max_accuracy_drop", None)),
                                    *((f"--max-{n}", getattr(args, f"max_{n}"))
                                      for n, _ in _BUDGET_OPTIONS)) if v is not None]
        if getattr(args, "target_sqnr", None) is None or other:
            raise PlanError("--per-channel-weights needs --target-sqnr and takes none of "
                            f"--target, --cost, budgets or --max-accuracy-drop (got "
                            f"{other or 'no --target-sqnr'})")
    if optimized and getattr(args, "binary", None):
        raise PlanError("--binary cannot be combined with the optimizer (--target-sqnr, "
                        "--max-accuracy-drop, --max-* budgets)")


def add_cluster_options(p: argparse.ArgumentParser, batches: bool = True) -> None:
    """``--scheduler ADDRESS`` / ``--workers N``: run the map steps on Dask (:mod:`fxp.dist`).

    ``batches``: also ``--batches-per-task K`` (commands that map over data batches).
    """
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the running Dask cluster at ADDRESS (tcp://host:8786; default: "
                        "$DASK_SCHEDULER_ADDRESS if set); needs pip install 'fxp[dist]'")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="run on a local Dask cluster of N worker processes")
    if not batches:
        return
    p.add_argument("--batches-per-task", type=positive_int, default=1, metavar="K",
                   help="with a cluster: consecutive batches per task (default 1)")
