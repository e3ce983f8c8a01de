"""Progress reporting for downloads and loads: a plain callback the UI turns into a progress bar.

    progress(stage, fraction, detail)   stage in {"download", "load", "ready"}; fraction in [0, 1] or None
"""
from __future__ import annotations

import io
from typing import Callable

from tqdm.auto import tqdm

Progress = Callable[[str, "float | None", str], None]


def progress_tqdm_class(progress: Progress) -> type:
    """A tqdm class for huggingface_hub's snapshot_download that reports downloaded bytes to `progress`.

    snapshot_download drives its byte bars through this class; nothing is printed.
    """

    class ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=io.StringIO(), disable=False)
            kwargs.pop("name", None)
            # The bytes-written bar has real file totals; the xet transfer bar's total is a running guess.
            self.reports = kwargs.get("unit") == "B" and not str(kwargs.get("desc", "")).startswith("Downloading")
            super().__init__(*args, **kwargs)
            self.bytes_done = kwargs.get("initial", 0) or 0

        def update(self, n=1):
            self.bytes_done += n or 0
            if self.reports:
                total = self.total or 0
                fraction = min(self.bytes_done / total, 1.0) if total else None
                progress("download", fraction, f"{self.bytes_done / 2**20:.1f} of {total / 2**20:.1f} MiB")
            return super().update(n)

    return ProgressTqdm
