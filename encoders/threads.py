"""Thread control shared by the torch encoders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` torch threads, then restore the process' setting.

    Small-tensor models (the title LSTM, DSSM) run faster on one thread than on two when the
    other core is busy (bench/encoders.py), so each encoder takes its own count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
