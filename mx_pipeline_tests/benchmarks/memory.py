"""The memory of the calling process, for the benchmarks' RSS figures."""

from pathlib import Path


def rss_mib() -> float:
    """This process's resident set now (``VmRSS``)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``), children not included.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across ``exec``, so a phase run as a child of a large parent
    (the benchmark that just generated millions of rows) would report the parent's RSS at the fork, not its own.
    """
    return _status_mib("VmHWM")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status: the benchmarks measure memory on Linux only")
