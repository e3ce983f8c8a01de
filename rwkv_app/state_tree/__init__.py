"""Session trees: fork, rewind and compare continuations on the real RNN state; chat on top; save and load.

Service layer: imports the model layer, never gradio.
"""
from .archive import ArchiveLimits, export_session, import_session
from .chat import ChatFormat, ChatSession
from .continuation import Branch
from .identity import ModelIdentity
from .nodes import Change, Node, SessionError
from .store import StateBudget
from .tree import SessionTree
from .validate import SessionFileError

__all__ = ["SessionTree", "Node", "Change", "Branch", "StateBudget", "ChatSession", "ChatFormat", "ModelIdentity",
           "ArchiveLimits", "export_session", "import_session", "SessionError", "SessionFileError"]
