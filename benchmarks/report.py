"""docs/BENCHMARKS.md (and docs/RELIABILITY.md): one section per suite, each replaced in place when its command
runs again."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

HEADER = "# Benchmarks\n\nWritten by `python -m benchmarks <suite>`; each section is replaced when its suite reruns.\n"


def write_section(path: Path, title: str, command: str, body: str, header: str = HEADER) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else header
    stamp = datetime.date.today().isoformat()
    section = f"## {title}\n\n`{command}` ({stamp})\n\n{body}"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
