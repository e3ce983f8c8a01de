"""One browser session's data: its session tree, chat, the node it is at, its comparison, its running job.

Everything the UI shows comes from here as plain data (text, lists, dicts); bad input raises an RwkvError
subclass with a message for the user, and leaves the session as it was.
"""
from __future__ import annotations

import threading
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Iterator

from ..core.sampling import fresh_seed
from ..errors import InputError
from ..state_tree import Branch, ChatSession, SessionError, SessionTree
from ..state_tree.continuation import resolve_sampling
from ..state_tree.nodes import GENERATED, STARTS, TEXT
from . import conversations, state_inspector, transfer, views
from .default_model import public_name
from .conversations import Saved, saves
from .runner import Job, stream_rows, stream_texts
from .user_chat import ChatActions

KNOBS = ("temperature", "top_p", "top_k", "repetition_penalty")


class UserSession(ChatActions):
    def __init__(self, playground, loaded, client: str | None = None, source: str | None = None):
        self.playground, self.options = playground, playground.options
        self.client = client  # the browser session it belongs to (Gradio's session hash), when known
        self.loaded = loaded
        self.source = source or playground.default_source  # the model as the visitor chose it (preset name...)
        self.saved = Saved()  # where the tree is kept in the session store (services/conversations.py)
        self.tree = self.new_tree()
        self.chat: ChatSession | None = None
        self.current = self.tree.root  # the playground's selected node
        self._start = self.tree.root  # where the playground's prompts start (a loaded state: personas.py)
        self.compared: list[str] = []  # the last comparison's nodes, in column order
        self.last_run: list[str] = []  # nodes the last generation added (the state tab's "over the last generation")
        self.job = Job()
        self.exports: list[tuple[Path, bool]] = []  # (exported file, folder made for it): removed on close
        self._busy = threading.Lock()  # held while a generation runs (`busy`)
        self._closing = threading.Lock()  # `close` runs once, however many callers end the session
        self.closed = False

    def new_tree(self, loaded=None) -> SessionTree:
        loaded = loaded or self.loaded
        return SessionTree(loaded.model, loaded.tokenizer, model_id=self.model_id(loaded),
                           budget=self.playground.state_budget())

    def model_id(self, loaded=None) -> str:
        """The model (default: the session's) as its trees record it, in their nodes' meta and a session file's
        tree.json: the name a visitor sees (default_model.public_name: a local folder by its own name, never where
        the server keeps it). Informational only: an import is checked against the identity of the weights
        (dtype, sizes, weights fingerprint: state_tree/identity.py), never against this name."""
        return public_name((loaded or self.loaded).key.source)

    @property
    def start(self) -> str:
        """Where "Generate from the prompt" starts: the root (the empty state) or a state root (personas.py)."""
        return self._start if self._start in self.tree.nodes else self.tree.root

    @start.setter
    def start(self, node_id: str) -> None:
        if self.tree.node(node_id).role not in STARTS:
            raise SessionError("prompts start at the root or at a loaded state")
        self._start = node_id

    @property
    def generating(self) -> bool:
        """Whether one of this session's actions is generating now."""
        return self._busy.locked()

    @property
    def engine(self):
        return self.playground.engine_for(self.loaded)

    def close(self) -> None:
        """Free everything this session holds: called when its browser session ends (the tab closed or reloaded:
        Gradio's unload event; or its state expired: the delete callback). A running generation is cancelled, and
        its end (`busy`) saves what it streamed before the tree is freed; an idle session's tree goes at once."""
        with self._closing:
            if self.closed:
                return
            self.closed = True
        self.job.cancel()
        self.job = Job()  # the closed session (kept by Gradio's state a while) holds no engine handle
        self.playground.manager.release(self.loaded)
        self.drop_exports()
        self.playground.session_closed(self)
        if not self.generating:  # else the generation's end frees it (`closed` is set before this check)
            self.free_tree()

    def free_tree(self) -> None:
        self.tree = self.chat = None
        self.playground.session_freed(self)

    # ---- checks --------------------------------------------------------------------------------------
    @contextmanager
    def busy(self):
        """The session's one running generation: yields its Job (Stop cancels it). Its end, however it ends, saves
        the tree (conversations.commit), also when the session was closed meanwhile (a tab reloaded or closed
        mid-stream keeps what was streamed, as after Stop); a closed session's tree is freed after that save."""
        if not self._busy.acquire(blocking=False):
            raise InputError("this session is already generating: wait for it or press Stop")
        self.job = Job()  # before the check below, so a close from now on cancels this job
        if self.closed:  # closed as this action began (its tab went): nothing runs
            self._busy.release()
            raise InputError("this session has ended (its tab was closed or reloaded): reload the page")
        try:
            yield self.job
        finally:
            try:
                conversations.commit(self)
            finally:
                self._busy.release()
                if self.closed:  # close() saw the generation running and left the tree to this end
                    self.free_tree()

    def check_text(self, text, what: str = "message") -> str:
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"the {what} is empty: type something first")
        if len(text) > self.options.max_prompt_chars:
            raise InputError(f"the {what} has {len(text):,} characters; this server takes at most "
                             f"{self.options.max_prompt_chars:,} per {what}")
        return text

    def branch(self, preset: str | None, max_new_tokens=None, seed=None, **knobs) -> Branch:
        if preset and preset not in self.playground.sampling_presets():
            raise InputError(f"unknown sampling preset {str(preset)[:40]!r}")
        overrides = {k: v for k, v in knobs.items() if v is not None}
        if max_new_tokens is not None:
            count = int(max_new_tokens)
            if not 1 <= count <= self.options.max_new_tokens:
                raise InputError(f"max_new_tokens (Max new tokens) must be from 1 to {self.options.max_new_tokens}, "
                                 f"got {count}")
            overrides["max_new_tokens"] = count
        if seed is not None and seed != "":
            overrides["seed"] = int(seed)  # kept apart (Branch.seed): a chat retry draws a new one unless given
        seed = overrides.pop("seed", None)
        settings = resolve_sampling(preset or None, overrides)  # the preset resolved once; bad settings fail now
        return Branch(settings, seed=seed, label=preset or None)

    # ---- playground ----------------------------------------------------------------------------------
    def generate(self, prompt: str, preset: str | None, max_new_tokens=None, seed=None) -> Iterator[str]:
        """Complete `prompt` from the start (the empty state, or a loaded one); yields the continuation so far.
        The new node becomes current."""
        self.check_text(prompt, "prompt")
        return self._continue(self.start, prompt, self.branch(preset, max_new_tokens, seed))

    def continue_from(self, node_id: str, text: str | None, preset: str | None, max_new_tokens=None,
                      seed=None) -> Iterator[str]:
        """Append `text` (optional) under the node, then generate; yields the continuation so far."""
        node_id = node_id or self.current
        if text:
            self.check_text(text, "text to add")
        elif self.tree.node(node_id).role in STARTS:
            raise InputError("nothing to continue at the start of the tree: type the text to add first "
                             "(or Generate from the prompt)")
        branch = self.branch(preset, max_new_tokens, seed)
        return self._continue(node_id, text, branch)

    def _continue(self, node_id: str, text: str | None, branch: Branch) -> Iterator[str]:
        with self.busy() as job:
            if text:
                node_id = self.text_node(node_id, text)
                self.current = node_id
            try:
                with closing(stream_rows(self.engine, self.tree, node_id, [branch], GENERATED, job)) as stream:
                    for _, value in stream:
                        yield value
            finally:  # finished, stopped, failed or abandoned: what was kept becomes current
                self.last_run = [n for n in job.nodes if n]
                self.current = self.last_run[0] if self.last_run else node_id

    def text_node(self, parent: str, text: str) -> str:
        """The node holding `text` typed under `parent`: the one made the last time the same text was typed there
        (regenerating a prompt adds a sibling generation, not a duplicate prompt node), else a new one."""
        for child in reversed(self.tree.node(parent).children):
            node = self.tree.node(child)
            if node.role == TEXT and node.text == text:
                return child
        return self.tree.extend(parent, text).node

    # ---- plain-data views for the UI (lists, dicts, strings: never the tree or a tensor) ------------------
    def tree_view(self) -> list[dict]:
        """The tree panel's rows (views.tree_rows): every node, the current path marked."""
        return views.tree_rows(self.tree, self.current)

    def has_node(self, node_id) -> bool:
        return isinstance(node_id, str) and node_id in self.tree.nodes

    def node_count(self) -> int:
        return len(self.tree.nodes)

    def path_token_rows(self, node_id: str | None = None) -> list[dict]:
        """The tokens on the path to `node_id` (default: the current node) with their probabilities."""
        return views.path_token_rows(self.tree, node_id or self.current)

    def continuation(self, node_id: str | None = None) -> str:
        """The Playground's Continuation box at `node_id` (default: the current node): views.continuation."""
        return views.continuation(self.tree, node_id or self.current)

    def alternatives(self, node_id: str, position: int) -> list[dict]:
        return views.alternatives(self.tree, node_id, position)

    def node_details(self, node_id: str) -> dict:
        """{id, role, tokens, text, meta (without the sampling settings), children}; {} for an unknown id. Seeds
        and any whole number a browser would round are strings (views.exact_json); the model is named as the
        visitor sees it (default_model.public_name), never by where the server keeps it."""
        if not self.has_node(node_id):
            return {}
        node = self.tree.node(node_id)
        meta = {k: v for k, v in node.meta.items() if k != "sampling"}
        if isinstance(meta.get("model"), str):  # a conversation saved before model ids were public names
            meta["model"] = public_name(meta["model"])
        return views.exact_json({"id": node.id, "role": node.role, "tokens": len(node.tokens), "text": node.text,
                                 "meta": meta, "children": len(node.children)})

    def api_tree_rows(self) -> list[dict]:
        """The tree for API clients: {id, parent, depth, role, text, tokens, current} per node, depth first."""
        rows = []
        for row in self.tree_view():
            node = self.tree.node(row["id"])
            rows.append({"id": node.id, "parent": node.parent, "depth": row["depth"], "role": node.role,
                         "text": node.text, "tokens": len(node.tokens), "current": row["current"]})
        return rows

    def current_tail(self) -> str | None:
        """The end of the text up to the current node; None at the root."""
        return None if self.current == self.tree.root else views.tail(self.tree.path_text(self.current))

    def state_report(self, node_id: str | None, other_id: str | None = None, tensor: str | None = None) -> dict:
        """The State tab's data, plain (state_inspector.state_report): at `node_id` (default: the current node),
        the difference against `other_id` when given, the heatmap of `tensor` (default: the family's memory)."""
        tree = self.tree
        node_id = tree.node(node_id).id if node_id else self.current  # another session's id is unknown here
        other = tree.node(other_id).id if other_id else None
        return state_inspector.state_report(tree, node_id, tensor or None, other)

    def state_tensor_names(self) -> tuple[list[str], str]:
        """This session's model's state tensors and the one the State tab's heatmap shows first (plain data)."""
        family = self.tree.family
        return list(family.state_names), family.memory_tensor

    def head_report(self, node_id: str | None, other_id: str | None = None, layer=None, head=None) -> dict | None:
        """The State tab's per-head data, plain (state_inspector.head_report); None for a model without heads."""
        tree = self.tree
        node_id = tree.node(node_id).id if node_id else self.current
        other = tree.node(other_id).id if other_id else None
        return state_inspector.head_report(tree, node_id, layer, head, other)

    def select(self, node_id: str) -> None:
        self.current = self.tree.node(node_id).id

    @saves
    def rewind(self, node_id: str, position: int | None) -> str:
        """Rewind to the state after the node's first `position` tokens; that point becomes current. No position
        (no token clicked) is refused in the visitor's words."""
        if position is None:
            raise InputError("click a token of the selected node first (the rewind point)")
        self.current = self.tree.fork(node_id, int(position)).node
        return self.current

    @saves
    def force(self, node_id: str, position: int | None, token: int | None) -> str:
        """Put `token` in place of the node's token at `position` (a new sibling branch); that point becomes
        current. No position or no token (nothing clicked or picked) is refused in the visitor's words."""
        if position is None or token is None:
            raise InputError("click a token, then pick one of its alternatives first")
        self.current = self.tree.force_token(node_id, int(position), int(token)).node
        return self.current

    def check_delete(self, node_id: str) -> None:
        """Refuse at once what `delete` would refuse (the root), before the page asks "Yes, delete it"."""
        self.tree.deletable(node_id)

    @saves
    def delete(self, node_id: str) -> None:
        change = self.tree.delete(node_id)
        if self.current not in self.tree.nodes:
            self.current = change.node
        if self.chat is not None and self.chat.current not in self.tree.nodes:
            self.chat.current = change.node

    def stop(self) -> bool:
        """Stop what this session is generating (what was generated so far is kept)."""
        running = self._busy.locked()
        self.job.cancel()
        return running

    # ---- compare -------------------------------------------------------------------------------------
    def compare(self, node_id: str | None, columns: list[tuple], max_new_tokens=None) -> Iterator[list[str]]:
        """2 to 4 continuations of the node, each (preset, seed); yields every column's text so far."""
        node_id = node_id or self.current
        if self.tree.node(node_id).role in STARTS:  # no text yet: nothing a continuation could follow
            raise InputError("nothing to compare at the start of the tree: select a node with text in the "
                             "Playground tab (or chat first)")
        if not 2 <= len(columns) <= 4:
            raise InputError(f"compare takes 2 to 4 columns, got {len(columns)}")
        branches = [self.branch(preset, max_new_tokens, seed) for preset, seed in columns]
        return self._compare(node_id, branches)

    def seeded(self, columns: list[tuple]) -> list[tuple]:
        """Compare columns (preset, seed) with a seed drawn now for each sampling column without one (the preset's
        own seed, if it fixes one, else a fresh random seed): every Run samples anew unless the visitor fixed a
        seed, and each column can show the seed that makes it again. A greedy column gets None (it draws nothing)."""
        seeded = []
        for preset, seed in columns:
            settings = self.branch(preset, None, seed).sampling  # an unknown preset or a bad seed: refused here
            if settings.greedy:
                seed = None
            elif seed is None or seed == "":
                seed = settings.seed if settings.seed is not None else fresh_seed()
            seeded.append((preset, seed))
        return seeded

    def _compare(self, node_id: str, branches: list[Branch]) -> Iterator[list[str]]:
        with self.busy() as job:
            try:
                with closing(stream_texts(self.engine, self.tree, node_id, branches, GENERATED, job)) as stream:
                    yield from stream
            finally:
                if job.nodes:  # refused at once (busy, bad node): the last comparison stays
                    self.compared = list(job.nodes)
                    self.last_run = [n for n in job.nodes if n]

    @saves
    def keep(self, column: int) -> str:
        """Make a compared column the session's current node (Playground, State); compared columns are plain
        generations, so the chat stays where it was."""
        if not 0 <= int(column) < len(self.compared) or self.compared[int(column)] is None:
            raise InputError("run a comparison first, then keep one of its columns")
        self.current = self.compared[int(column)]
        return self.current

    # ---- files and models ----------------------------------------------------------------------------
    def export(self, directory) -> str:
        """Write the session file into `directory`; the previous export is removed (Gradio serves a download
        from its own cached copy), and the last one goes when the session ends."""
        return self._keep_export(directory, lambda: transfer.export_to(self, directory))

    def export_state(self, node_id: str | None, directory) -> str:
        """Write a node's state (default: the current node) as a state file; kept and removed as exports are."""
        return self._keep_export(directory, lambda: transfer.export_state_to(self, node_id, directory))

    def _keep_export(self, directory, write) -> str:
        made_folder = not Path(directory).exists()
        path = write()
        self.drop_exports()
        self.exports.append((Path(path), made_folder))
        return path

    def drop_exports(self) -> None:
        """Delete this session's exported files, and the folders made for them (when nothing else is there)."""
        for path, made_folder in self.exports:
            path.unlink(missing_ok=True)
            if made_folder:
                with suppress(OSError):
                    path.parent.rmdir()
        self.exports = []

    @saves
    def load_file(self, path) -> None:
        """Resume an uploaded session file; it becomes a new conversation of this visitor."""
        self.adopt(transfer.import_from(self, path))
        self.saved = Saved(self.saved.owner, mark="imported")  # named at its first save, apart from the original

    def adopt(self, tree: SessionTree) -> None:
        """Make `tree` (imported, opened from the store, or new) this session's, at the node it was left at."""
        self.tree, self.compared, self.last_run = tree, [], []
        self.chat = ChatSession.resume(tree) if "chat" in tree.meta else None
        left_at = tree.meta.get(conversations.CURRENT)
        self.current = left_at if left_at in tree.nodes else self.chat.current if self.chat else tree.root
        self._start = tree.meta.get(conversations.START, tree.root)  # `start` falls back to the root if not a start

    def switch_model(self, source: str, progress=None, resume: bool = True) -> bool:
        """Load (or borrow) another model; the session resumes its latest conversation on that model (`resume`),
        else starts a new tree on it. The conversation it leaves stays in the store. On error nothing changes; for
        the model the session already runs nothing changes either (the open conversation stays open): False."""
        source = self.playground.check_source(source)
        loaded = self.playground.acquire(source, progress)  # a failed download or load raises here
        if loaded.key == self.loaded.key:  # (under the name asked for, as a switch would record it)
            self.playground.manager.release(loaded)
            self.source = source
            return False
        try:
            if self._busy.locked():
                raise InputError("stop the running generation before switching model")
            tree = self.new_tree(loaded)
        except BaseException:
            self.playground.manager.release(loaded)  # no borrow left behind; the session is as it was
            raise
        old, self.loaded, self.source = self.loaded, loaded, source
        self.playground.manager.release(old)
        self.adopt(tree)
        self.saved = Saved(self.saved.owner)
        if resume:
            conversations.resume_latest(self)
        return True
