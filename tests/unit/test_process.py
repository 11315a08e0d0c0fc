"""The notifiers' loop helper: a signal asks the loop to stop, then the old handler
is back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from streams.process import run_until_signalled


class Loop:
    def __init__(self, sig: signal.Signals) -> None:
        self.sig = sig
        self.stopped = threading.Event()

    def run(self) -> str:
        os.kill(os.getpid(), self.sig)  # handled in this (the main) thread, at once
        assert self.stopped.wait(5), "the signal did not ask the loop to stop"
        return "done"

    def stop(self) -> None:
        self.stopped.set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_loop_and_the_old_handler_is_restored(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    assert run_until_signalled(Loop(sig)) == "done"
    assert signal.getsignal(sig) is before
