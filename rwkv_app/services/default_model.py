"""Which model the app starts on when none is named, and the bundled demo model (`--model demo`).

With no `--model`, the app uses the Hub's RWKV/rwkv-4-169m-pile when it is already in the Hub cache or the
Hub answers within a short timeout; otherwise (offline, on a train, in a locked-down CI) it starts at once on
the small demo model committed under demo-model/, and says so. The choice comes back with a message for the
command line now and the UI later.

Demo names: `demo-rwkv4` is demo-model/ (RWKV-4), `demo-rwkv7` is demo-model-rwkv7/ (RWKV-7, same size, corpus and
tokens seen), and `demo` is whichever bundled one scored the lower held-out bits per character in its
training.json (demo-model/ when it is the only one).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from huggingface_hub import constants, is_offline_mode

from ..weights.checkpoints import WEIGHT_NAMES
from ..errors import HubError
from ..weights.hub import resolve_model_dir

DEMO_NAME = "demo"
DEMO_DIR = Path(__file__).resolve().parents[2] / "demo-model"
DEMO7_DIR = DEMO_DIR.with_name("demo-model-rwkv7")
DEMO_DIRS = {"demo-rwkv4": DEMO_DIR, "demo-rwkv7": DEMO7_DIR}
DEFAULT_REPO = "RWKV/rwkv-4-169m-pile"
PROBE_TIMEOUT_S = 2.0
DEMO_BANNER = "Running the bundled demo model: a tiny RWKV trained on Jane Austen (style, not facts)."
OFFLINE_HINT = ("offline? `python app.py --model demo` starts on the bundled demo model, and HF_HUB_OFFLINE=1 uses "
                "the Hugging Face cache only, without asking the Hub")
DEMO_SUMMARY = ("the bundled demo model (4 layers x 256, trained by this project on Jane Austen's novels; "
                "it writes Austen-flavoured English, not facts)")

Probe = Callable[[float], bool]


@dataclass(frozen=True)
class ModelChoice:
    source: str  # what to load: a Hub repo id, preset name, or local path (the demo's folder for the demo)
    is_demo: bool
    message: str  # one line for the server log: why this model; "" when the user named it
    banner: str = ""  # a few words for the web page (operator advice such as "pass --model" stays in the log)


def resolve_demo(source: str) -> str:
    """`demo`, `demo-rwkv4`, `demo-rwkv7` -> that bundled model's folder; anything else unchanged."""
    if source == DEMO_NAME:
        return str(best_demo())
    if source in DEMO_DIRS:
        if not (DEMO_DIRS[source] / "config.json").is_file():
            raise HubError(f"{source}: the bundled model folder {DEMO_DIRS[source]} is missing")
        return str(DEMO_DIRS[source])
    return source


def best_demo(folders=tuple(DEMO_DIRS.values())) -> Path:
    """The bundled demo with the lowest held-out bits per character (training.json); the first when none says."""
    scored = []
    for folder in folders:
        try:
            record = json.loads((Path(folder) / "training.json").read_text(encoding="utf-8"))
            scored.append((float(record["heldout"]["bits_per_char"]), Path(folder)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return min(scored, key=lambda item: item[0])[1] if scored else Path(folders[0])


def is_cached(repo_id: str, cache_dir: str | Path | None = None) -> bool:
    """Whether the Hub cache holds a usable snapshot of `repo_id` (config and weights); never touches the network."""
    try:
        folder = resolve_model_dir(repo_id, cache_dir=cache_dir, local_files_only=True)
    except HubError:
        return False
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in WEIGHT_NAMES)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint answers an HTTP request within `timeout` seconds (any status counts).

    The request runs in a daemon thread and is abandoned at the deadline, so a DNS lookup that hangs cannot
    hold up the start.
    """
    answered = threading.Event()

    def ask() -> None:
        from huggingface_hub.utils import get_session

        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            answered.set()
        except Exception:  # any failure to get an answer means "not reachable"
            pass

    threading.Thread(target=ask, name="hub-probe", daemon=True).start()
    return answered.wait(timeout)


def choose_default_model(requested: str | None, cache_dir: str | Path | None = None,
                         probe: Probe = hub_reachable, timeout: float = PROBE_TIMEOUT_S) -> ModelChoice:
    """What to load for `--model requested` (None: not given), and the line to show about it."""
    if requested == DEMO_NAME or requested in DEMO_DIRS:
        return ModelChoice(resolve_demo(requested), True, f"Using {DEMO_SUMMARY}.", DEMO_BANNER)
    if requested is not None:
        return ModelChoice(requested, False, "")
    if is_cached(DEFAULT_REPO, cache_dir):
        return ModelChoice(DEFAULT_REPO, False, f"Using {DEFAULT_REPO} from the Hugging Face cache.")
    if is_offline_mode():
        why = "offline mode is on (HF_HUB_OFFLINE=1)"
    elif probe(timeout):
        return ModelChoice(DEFAULT_REPO, False, f"Using {DEFAULT_REPO}: downloading it from the Hugging Face Hub.")
    else:
        why = f"the Hugging Face Hub did not answer within {timeout:g} s"
    return ModelChoice(resolve_demo(DEMO_NAME), True,
                       f"{DEFAULT_REPO} is not cached and {why}: starting on {DEMO_SUMMARY}. "
                       f"Pass --model to choose another model.", DEMO_BANNER)


def public_name(source: str) -> str:
    """What a visitor sees for a model source: "demo" for the bundled demo `--model demo` means, `demo-rwkv4` /
    `demo-rwkv7` for the other, a folder's own name for a local path (never where the server keeps it), a preset
    name or Hub repo id unchanged."""
    import os

    folder = Path(source).resolve()
    if folder == best_demo().resolve():
        return DEMO_NAME
    for name, demo in DEMO_DIRS.items():
        if folder == demo.resolve():
            return name
    return Path(source).name if os.path.isabs(source) else source


def bundled_demos() -> dict[str, dict]:
    """The bundled demos present in this checkout, by their public name: {source (folder), params}."""
    demos = {}
    for folder in DEMO_DIRS.values():
        try:
            record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        demos[public_name(str(folder))] = {"source": str(folder), "params": record.get("parameters")}
    return demos
