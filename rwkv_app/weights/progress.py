"""Progress reporting for downloads and loads: a plain callback the UI turns into a progress bar.

    progress(stage, fraction, detail)   stage in {"download", "load", "ready"}; fraction in [0, 1] or None

During a download the fraction never goes backwards, and it reaches 1.0 only once every file is in place.
"""
from __future__ import annotations

import io
import threading
from typing import Callable

from tqdm.auto import tqdm

Progress = Callable[[str, "float | None", str], None]


class DownloadTally:
    """The sum of what one snapshot_download's bars report: files to fetch and done, bytes known and written.

    snapshot_download drives three bars: the file count ("Fetching N files", total N from the start), the bytes
    written (its total grows by each file's size when that file starts downloading) and the network transfer
    (a running guess, ignored). Since sizes arrive file by file, a small file can be complete before a large one
    has started, so bytes written over bytes known can fall. The reported fraction is that ratio held at its
    highest so far, and it is only 1.0 when the file count says every file is done.
    """

    def __init__(self, progress: Progress):
        self.progress = progress
        self.lock = threading.Lock()  # files download in parallel threads
        self.files_total: int | None = None
        self.files_done = 0
        self.bytes_done = 0
        self.bytes_total = 0
        self.fraction = 0.0

    def expect_files(self, total: int | None) -> None:
        with self.lock:
            self.files_total = total

    def add_bytes(self, n: int, bytes_total: int) -> None:
        with self.lock:
            self.bytes_done += n
            self.bytes_total = max(self.bytes_total, bytes_total)
            self._report()

    def add_files(self, n: int) -> None:
        with self.lock:
            self.files_done += n
            if self._all_files_done():
                self._report()

    def _all_files_done(self) -> bool:
        return self.files_total is not None and self.files_done >= self.files_total

    def _report(self) -> None:
        """Called with the lock held, so reports from parallel downloads reach `progress` in order."""
        if self._all_files_done():
            self.fraction = 1.0
        elif self.bytes_total and (self.bytes_done < self.bytes_total or self.files_total is None):
            # (When every file started so far is written but files remain, the fraction holds instead.)
            self.fraction = max(self.fraction, min(self.bytes_done / self.bytes_total, 1.0))
        files = f", {self.files_done} of {self.files_total} files" if self.files_total is not None else ""
        self.progress("download", self.fraction,
                      f"{self.bytes_done / 2**20:.1f} of {self.bytes_total / 2**20:.1f} MiB{files}")


def progress_tqdm_class(progress: Progress) -> type:
    """A tqdm class for one huggingface_hub snapshot_download that reports its download to `progress`.

    snapshot_download drives its bars through this class; nothing is printed. Use a new class per download.
    """
    tally = DownloadTally(progress)

    class ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=io.StringIO(), disable=False)
            kwargs.pop("name", None)
            unit, desc = kwargs.get("unit", "it"), str(kwargs.get("desc", ""))
            # Byte bars: the written-bytes bar has real file totals; the network transfer bar ("Downloading
            # bytes") has a running guess. Any other bar counts files.
            self.role = ("transfer" if desc.startswith("Downloading") else "bytes") if unit == "B" else "files"
            super().__init__(*args, **kwargs)
            if self.role == "files":
                tally.expect_files(self.total)
            elif self.role == "bytes" and self.n:
                tally.add_bytes(self.n, self.total or 0)

        def update(self, n=1):
            result = super().update(n)
            if self.role == "bytes":
                tally.add_bytes(n or 0, self.total or 0)
            elif self.role == "files":
                tally.add_files(n or 0)
            return result

    return ProgressTqdm
