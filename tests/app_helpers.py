"""Shared by the app tests: a tiny local model directory (random weights + a small BPE tokenizer) and a
playground service on it."""
import socket
from contextlib import contextmanager

from rwkv_app import RwkvConfig, RwkvForCausalLM
from rwkv_app.services.manager import ModelManager
from rwkv_app.services import Playground, PlaygroundOptions

from .conftest import randomize
from .test_tokenizer import build_backend


def write_tiny_model(directory, seed: int = 1, hidden_size: int = 16):
    backend = build_backend(vocab_size=400)
    model = randomize(RwkvForCausalLM(RwkvConfig(vocab_size=backend.get_vocab_size(), hidden_size=hidden_size,
                                                 num_hidden_layers=2)), seed)
    model.save_pretrained(directory)
    backend.save(str(directory / "tokenizer.json"))
    return directory


def tiny_playground(directory, **options) -> Playground:
    playground = Playground(PlaygroundOptions(device="cpu", dtype="float32", **options),
                            ModelManager(local_files_only=True))
    playground.start(str(directory))
    return playground


@contextmanager
def launched(directory, **options):
    """The web app on a free loopback port over `directory`'s model: yields (url, playground)."""
    from rwkv_app.ui import build_app

    playground = tiny_playground(directory, **options)
    demo = build_app(playground)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, max_file_size="2mb")
    try:
        yield url, playground
    finally:
        demo.close()
        playground.close()


def free_port() -> int:
    """A loopback port nobody listens on now (for launching the app in a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
