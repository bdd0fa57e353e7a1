"""The heap keeper gives back what a burst of calls left behind, on threads too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services.harness import memory

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: the allocator's parameters are set once, before
# any thread, as berthd's processes do.
SCRIPT = textwrap.dedent(
    """
    import threading
    from services.harness import memory

    memory.tune()

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def burst() -> None:
        # 6 MiB in 256 KiB pieces, each written: below the trim threshold, so
        # free() alone keeps them.
        pieces = [b"\\1" * (256 << 10) for _ in range(24)]
        del pieces

    keeper = memory.HeapKeeper()
    keeper.trim()
    before = resident()
    worker = threading.Thread(target=burst)
    worker.start()
    worker.join()
    kept = resident() - before
    keeper.trim()
    print(kept, resident() - before)
    """
)


@pytest.mark.skipif(memory._libc() is None, reason="needs glibc's mallopt and malloc_trim")
def test_trim_gives_back_a_worker_threads_burst() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    kept, left = int(out[0]), int(out[1])
    # The burst is still resident before the trim (else this proves nothing)...
    assert kept > 4 << 20, f"the burst left only {kept} bytes resident: nothing to trim"
    # ...and gone after it, although a worker thread allocated it.
    assert left < 1 << 20, f"{left} bytes still resident after the trim"
