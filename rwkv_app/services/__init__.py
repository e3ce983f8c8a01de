"""The playground's service layer: what the web UI's callbacks call (never gradio, never tensors in return values).

    playground = Playground(PlaygroundOptions(), manager)     # shared: models, engines, limits
    playground.start("rwkv-4-169m-pile")                      # the default model, loaded once
    session = playground.new_session()                        # per browser session; session.close() frees it
    for text in session.generate("The quick brown fox", "balanced", 40, seed=1): ...
"""
from ..core.openmp import release_thread_pool
from .runner import QueueFull
from .service import Playground, PlaygroundOptions
from .user_session import UserSession

__all__ = ["Playground", "PlaygroundOptions", "UserSession", "QueueFull", "release_thread_pool"]
