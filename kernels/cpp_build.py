"""This project's C++ CPU extensions, built at first use by torch.utils.cpp_extension (a C++ compiler and ninja;
cached under TORCH_EXTENSIONS_DIR, so a machine builds each once): kernels/int8_cpu (the int8 x bfloat16 kernel and
the one-token layer steps, AVX512-BF16) and kernels/wkv_loops (both families' WKV token loops, AVX512F only)."""
from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .cpu_flags import cpu_flags

log = logging.getLogger(__name__)
_build_lock = threading.Lock()


@dataclass(frozen=True)
class Extension:
    name: str  # the module's name (and its build folder's)
    sources: tuple[Path, ...]
    cflags: tuple[str, ...]
    cpu_flag: str  # the /proc/cpuinfo flag its instructions need
    off_switch: str  # an environment variable: "0" never builds or uses it
    what: str  # for the log: what it is
    instead: str  # for the log: what runs where it does not

    def unsupported_reason(self) -> str:
        """Why this machine does not run it, without building ("" where it does or will, once built)."""
        if os.environ.get(self.off_switch, "1") == "0":
            return f"{self.off_switch}=0"
        if self.cpu_flag not in cpu_flags():
            return f"this CPU lacks {self.cpu_flag}"
        return ""

    @functools.cache
    def load(self):
        """The built module, or None (logged once) where this machine cannot build or run it."""
        reason = self.unsupported_reason()
        if reason:
            log.info("%s off: %s; %s", self.what, reason, self.instead)
            return None
        with _build_lock:
            log.info("loading the %s (built once per machine, then cached)", self.what)
            try:
                from torch.utils.cpp_extension import load as build
                return build(self.name, [str(source) for source in self.sources], verbose=False,
                             extra_cflags=list(self.cflags))
            except Exception as error:  # no compiler, no ninja, a failed build
                log.warning("%s could not be built (%s); %s", self.what, str(error)[-300:], self.instead)
                return None
