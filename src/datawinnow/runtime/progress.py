"""Progress bars: rate and ETA on stderr, off under ``--quiet`` (``progress=False``)."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "sample"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                smoothing=0.1)
