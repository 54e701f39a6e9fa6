"""Number formatting shared by the markdown, HTML and console renderings."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"


def finite(x: Any) -> bool:
    """True for a real, finite number."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _sig(v: float, digits: int = 3) -> str:
    """`digits` significant digits, never in exponent notation (999.6 -> "1000", not "1e+03")."""
    text = f"{v:.{digits}g}"
    return f"{v:.0f}" if "e" in text else text


def count(x: Any) -> str:
    """22.7M, 1.2k, 512."""
    if not finite(x):
        return DASH
    x = float(x)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{_sig(x / div)}{unit}"
    return f"{x:.0f}"


def pct(x: Any) -> str:
    """Percentages over several decades: 100%, 1.52%, 0.0123%."""
    if not finite(x):
        return DASH
    x = float(x)
    return f"{x:.3g}%" if x < 100 else f"{x:.0f}%"


def nbytes(x: Any) -> str:
    """Binary units: 87.3 MiB."""
    if not finite(x):
        return DASH
    x = float(x)
    for div, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= div:  # 1000-1023 of a unit: "1024 MiB", not "1.02e+03 MiB"
            return f"{_sig(x / div)} {unit}"
    return f"{x:.0f} B"


def seconds(x: Any) -> str:
    """12.3 s, 4.5 min, 2.1 h."""
    if not finite(x):
        return DASH
    x = float(x)
    if x >= 7200:
        return f"{_sig(x / 3600, 2)} h"
    if x >= 120:
        return f"{_sig(x / 60)} min"
    return f"{x:.3g} s"


def flops(x: Any, per_second: bool = False) -> str:
    """1.23 PFLOP, 45.6 TFLOP/s."""
    if not finite(x):
        return DASH
    x = float(x)
    unit = "FLOP/s" if per_second else "FLOP"
    for div, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= div:
            return f"{_sig(x / div)} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def rate(x: Any) -> str:
    """Throughput: 1.23k, 45.6."""
    if not finite(x):
        return DASH
    x = float(x)
    return f"{_sig(x / 1000)}k" if x >= 1000 else _sig(x)


def lr(x: Any) -> str:
    """Learning rates: 5e-04 style, compact; 0 (closed-form fits, no learning rate) is a dash."""
    return f"{float(x):.0e}" if finite(x) and float(x) != 0 else DASH


def points(x: Any, digits: int = 1) -> str:
    """A score in points."""
    return f"{float(x):.{digits}f}" if finite(x) else DASH


def mean_std(mean: Any, std: Any, digits: int = 1) -> str:
    """ "85.3 ± 0.4", or "85.3" for one seed."""
    if not finite(mean):
        return DASH
    if not finite(std):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(std):.{digits}f}"


def interval(lo: Any, hi: Any, digits: int = 1) -> str:
    """ "[84.9, 85.7]" or a dash when not computed."""
    if not (finite(lo) and finite(hi)):
        return DASH
    return f"[{float(lo):.{digits}f}, {float(hi):.{digits}f}]"


def signed(x: Any, std: Any = None, digits: int = 1) -> str:
    """ "−0.4 ± 0.6" with a real minus sign."""
    if not finite(x):
        return DASH
    out = f"{float(x):+.{digits}f}".replace("-", "−")
    if finite(std):
        out += f" ± {float(std):.{digits}f}"
    return out


def gap(observed: Any, low: Any, high: Any, digits: int = 1) -> str:
    """A difference in points with its interval: "−1.2 [−2.5, +0.1]"."""
    if not finite(observed):
        return DASH
    if not (finite(low) and finite(high)):
        return signed(observed, digits=digits)
    return f"{signed(observed, digits=digits)} [{signed(low, digits=digits)}, {signed(high, digits=digits)}]"


def pvalue(p: Any) -> str:
    """ "0.032", "<0.001", or a dash."""
    if not finite(p):
        return DASH
    p = float(p)
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def ratio(x: Any) -> str:
    """A multiple of a reference: "0.45×"."""
    return f"{_sig(float(x), 2)}×" if finite(x) else DASH


def milliseconds(x: Any) -> str:
    """Latencies: 12.3 ms."""
    return f"{_sig(float(x))} ms" if finite(x) else DASH
