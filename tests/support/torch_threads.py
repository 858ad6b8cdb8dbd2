"""Torch's intra-op thread count for a block of code: one thread for tiny nets, where two spin-wait on a shared CPU
(Zennit on 16² and 32² nets took 6–7× the CPU time with two threads on a busy 2-core machine)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the previous count."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
