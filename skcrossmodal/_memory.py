"""Refuse an allocation that cannot fit, before making it.

numpy's own ``MemoryError`` comes only when the operating system refuses,
names a shape rather than the parameter that asked for it, and does not come
at all for a request just under the machine's memory (which then swaps or
is killed). Every parameter-sized allocation goes through
:func:`check_allocation` first.
"""

from __future__ import annotations

import os


def physical_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # e.g. Windows
        return None


def check_allocation(n_bytes, what, advice):
    """Raise a MemoryError naming ``what`` when ``n_bytes`` exceed memory.

    Parameters
    ----------
    n_bytes : float
        The estimated peak of the allocation.
    what : str
        What asks for it, naming the parameter (e.g. "batch_size=10**9 on
        200000 queries").
    advice : str
        What to do instead.
    """
    available = physical_memory()
    if available is not None and n_bytes > available:
        raise MemoryError(
            f"{what} needs about {n_bytes / 2**30:.1f} GiB, more than this "
            f"machine's {available / 2**30:.1f} GiB. {advice}"
        )
