"""Human-readable lines for alerts in a terminal (the demo and `tail`)."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

_COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[32m"}
_ICONS = {"became_unprofitable": "✖", "at_risk": "▲", "recovered": "✔"}
_RESET = "\033[0m"


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def alert_line(alert: dict[str, Any], *, colour: bool = False) -> str:
    kind = alert["kind"]
    text = (
        f"{alert['as_of'][:10]}  {_ICONS.get(kind, '•')} {kind:<19} {alert['customer_id']:<12} "
        f"net {alert['trailing']['net_profit']:>10}  "
        + ", ".join(f"{d['component']} {round(d['share'] * 100)}%" for d in alert["drivers"])
    )
    if colour:
        return f"{_COLOURS.get(alert['severity'], '')}{text}{_RESET}"
    return text


def print_alert(alert: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    stream.write(alert_line(alert, colour=use_colour(stream)) + "\n")
    stream.flush()
