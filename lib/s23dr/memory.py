"""glibc's malloc told to keep the memory a process frees: the data generator and the trainer.

Both free and allocate the same large blocks over and over (the generator's numpy
temporaries, a training step's activations). Under glibc's defaults a block above its mmap
threshold goes back to the OS when freed and is faulted in again, page by page, when it is
allocated next; thousands of page faults a training step. Kept in the heap, the generator
ran about a tenth faster, and a compiled step of the `cpu` profile, in a process training
alone, took 4 to 9% less CPU with the same weights, bit for bit (benchmarks/allocator.py);
in the book's build, two trainer processes side by side, the build's time did not change
measurably (the book, Method: training).
"""

import ctypes

MMAP_THRESHOLD = 256 << 20  # blocks below it come from the heap
TRIM_THRESHOLD = 1 << 30  # freed heap memory is kept up to this much


def keep_freed_memory():
    """Set glibc's mmap and trim thresholds (mallopt) for this process; a no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    libc.mallopt(m_trim_threshold, TRIM_THRESHOLD)
