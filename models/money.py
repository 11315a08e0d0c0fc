"""Money is `Decimal` end to end; outputs carry it as a 2-place string, half-even."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
_CENT = Decimal("0.01")
# Every amount entering the ledger is quantized to 10 decimal places (a hundred-
# millionth of a cent). Then every sum of amounts below 10^17 is exact within
# Decimal's default 28 digits: running window sums equal fresh sums to the last
# digit, whatever the order of additions, so no rounding residue (a -1E-29 "loss")
# can flip a status at zero, and a state restored from its bytes behaves exactly
# like the original.
LEDGER_PLACES = Decimal("1e-10")
_SHARE = Decimal("0.0001")


def exact(amount: Decimal) -> Decimal:
    """An amount as the ledger holds it (see LEDGER_PLACES), without trailing zeros
    so that sums stay short and the state encodes compactly."""
    return amount.quantize(LEDGER_PLACES, rounding=ROUND_HALF_EVEN).normalize()


def money_str(amount: Decimal) -> str:
    q = amount.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    if not q:  # no "-0.00" in outputs
        q = abs(q)
    return f"{q:f}"


def share(part: Decimal, whole: Decimal) -> float:
    """A ratio rounded half-even to 4 places, as a JSON float."""
    return float((part / whole).quantize(_SHARE, rounding=ROUND_HALF_EVEN))
