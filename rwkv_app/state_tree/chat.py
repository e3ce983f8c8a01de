"""Chat on the session tree, in the RWKV chat format:

    {system}

    User: {message}

    Bot: {reply}

    User: ...

Each turn is a node: a user node holds "User: {message}\\n\\nBot:" (after any separator the path still
needs), a bot node the reply's tokens up to and including the "\\n\\n" that ended it (the double-newline
stop), so the next turn starts from the state right after it. `current` is the node the conversation is
at; retry, undo, edit and switching branches only move it or add siblings, never lose a turn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .continuation import Branch, resolve_sampling
from .nodes import BOT, STARTS, SYSTEM, USER, Change, SessionError
from .tree import SessionTree

TURN_SEPARATOR = "\n\n"
# What the bot's turn starts with, after "Assistant:", for the G1 models (their model card): the model decides
# whether to think; it thinks first (the turn opens "<think"); it does not think ("fake think": an empty block).
THINKING = {"auto": "", "think": " <think", "no_think": " <think>\n</think"}


@dataclass(frozen=True)
class ChatFormat:
    user: str = "User"
    bot: str = "Bot"
    thinking: str = "auto"  # a key of THINKING: what the bot's turn is prefilled with

    def __post_init__(self) -> None:
        for name in (self.user, self.bot):
            if not isinstance(name, str) or not name.strip() or any(c in name for c in ":\n\r"):
                raise SessionError(f"chat names must be non-empty, on one line and without ':', got {name!r}")
        if self.thinking not in THINKING:
            raise SessionError(f"thinking must be one of {', '.join(THINKING)}, got {self.thinking!r:.40}")

    @property
    def prefill(self) -> str:
        return THINKING[self.thinking]

    def user_turn(self, message: str, lead: str) -> str:
        """The text of a user node: separator the path needs, the message, and the bot's cue (with its prefill:
        the reply's first words, shown as part of the reply, see nodes.chat_messages)."""
        return f"{lead}{self.user}: {message}{TURN_SEPARATOR}{self.bot}:{self.prefill}"


def chat_names(tree, user: str | None, bot: str | None) -> tuple[str, str]:
    """A new conversation's names: those given, else the family's (RWKV-7: User / Assistant); each one valid
    (ChatFormat) and the two different, ignoring case and spaces: with "User: ..." on both sides the transcript
    cannot say whose turn a line is, to the model or to a reader. (ChatSession.resume does not call this: a saved
    conversation whose names are equal still opens.)"""
    user, bot = user or tree.family.chat_names[0], bot or tree.family.chat_names[1]
    ChatFormat(user, bot)
    if " ".join(user.split()).casefold() == " ".join(bot.split()).casefold():
        raise SessionError(f"the user name {user!r} and the bot name {bot!r} are the same (case and spaces do not "
                           f"count), so the model could not tell whose turn a line is: give them different names")
    return user, bot


def clean_message(message: str) -> str:
    """ChatRWKV's: strip, normalize newlines, and no blank line inside (it would end the turn)."""
    if not isinstance(message, str):
        raise SessionError(f"a chat message must be a string, got {type(message).__name__}")
    text = message.strip().replace("\r\n", "\n").replace("\r", "\n")
    while TURN_SEPARATOR in text:
        text = text.replace(TURN_SEPARATOR, "\n")
    if not text:
        raise SessionError("a chat message cannot be empty")
    return text


def reply_settings(settings, tokenizer):
    """A bot turn's sampling: it always stops at a blank line, and its first token never starts a new line
    (else the model may end the turn at once and the reply is empty)."""
    stop = settings.stop if TURN_SEPARATOR in settings.stop else settings.stop + (TURN_SEPARATOR,)
    suppress = tuple(dict.fromkeys(settings.begin_suppress_tokens + tokenizer.line_break_start_ids()))
    return settings.replace(stop=stop, begin_suppress_tokens=suppress)


def separator_after(tail: str) -> str:
    """What must come before the next turn so that turns are separated by one blank line."""
    if not tail or tail.endswith(TURN_SEPARATOR):
        return ""
    return "\n" if tail.endswith("\n") else TURN_SEPARATOR


class ChatSession:
    """A chat held in a SessionTree (saved with it: the format and the current node live in tree.meta)."""

    def __init__(self, tree: SessionTree, *, user: str | None = None, bot: str | None = None,
                 system: str | None = None, sampling=None, start: str | None = None, thinking: str = "auto"):
        """`user` and `bot` default to the names the model's family was tuned on (RWKV-7: User / Assistant).
        `start`: the state the conversation starts from, the root (default) or a state root (SessionTree.add_state).
        `thinking`: "auto" (the model decides), "think" or "no_think" (THINKING: the G1 models' prefills)."""
        tree.require_tokenizer()
        start = tree.root if start is None else start
        if tree.node(start).role not in STARTS:
            raise SessionError("a conversation starts at the root or at a loaded state")
        user, bot = chat_names(tree, user, bot)
        self.tree, self.format = tree, ChatFormat(user, bot, thinking)
        self.sampling = "chat" if sampling is None else sampling  # a preset name, SamplingSettings or dict
        saved = self.sampling if isinstance(self.sampling, str) else resolve_sampling(self.sampling, {}).to_dict()
        tree.meta["chat"] = {"user": user, "bot": bot, "system": system or "", "sampling": saved, "current": start,
                             "start": start, "thinking": thinking}
        if system and system.strip():
            text = system.strip()
            self.current = tree.extend_tokens(start, tree.tokenizer.encode(text + TURN_SEPARATOR), SYSTEM, text).node

    @classmethod
    def resume(cls, tree: SessionTree, sampling=None) -> ChatSession:
        """The chat saved in a tree (e.g. after import_session), at its current node, with its saved sampling
        settings unless `sampling` is given."""
        saved = tree.meta.get("chat")
        if not isinstance(saved, dict) or saved.get("current") not in tree.nodes:
            raise SessionError("this session holds no chat")
        chat = cls.__new__(cls)
        chat.tree, chat.format = tree, ChatFormat(saved.get("user", "User"), saved.get("bot", "Bot"),
                                                  saved.get("thinking", "auto"))
        chat.sampling = sampling or saved.get("sampling") or "chat"
        seen = saved.get("seen")  # a file's branch memory: only node ids to node ids (or "") are kept
        saved["seen"] = {k: v for k, v in seen.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(seen, dict) else {}
        resolve_sampling(chat.sampling, {})  # a saved file's settings are checked now, not at the first reply
        return chat

    @property
    def current(self) -> str:
        return self.tree.meta["chat"]["current"]

    @current.setter
    def current(self, node_id: str) -> None:
        """Move the conversation; every node on its path remembers the turn it went on to ("" where it ends),
        so switching back to a branch shows it as it was left, never a turn that was undone."""
        node = self.tree.node(node_id)
        saved = self.tree.meta["chat"]
        saved["current"] = node.id
        seen = saved.setdefault("seen", {})
        seen[node.id] = ""
        while node.parent is not None:
            seen[node.parent] = node.id
            node = self.tree.node(node.parent)

    def last_seen(self, node_id: str) -> str:
        """Where the conversation stood when it last went through `node_id`: down the turns it went on to
        (the latest child where it never went on), to the turn it ended at."""
        seen = self.tree.meta["chat"].get("seen", {})
        node = self.tree.node(node_id)
        while True:
            after = seen.get(node.id)
            if after is None:
                after = node.children[-1] if node.children else ""
            if not after or after not in self.tree.nodes:
                return node.id
            node = self.tree.node(after)

    # ---- turns ---------------------------------------------------------------------------------------
    def send(self, message: str, sampling=None, **overrides) -> Iterator:
        """Add a user turn at the current node and stream the bot's reply (events, then a Change)."""
        resolve_sampling(sampling or self.sampling, overrides)  # bad settings: fail before adding the turn
        self.current = self.add_user(self.current, message).node
        return self.reply(sampling, **overrides)

    def reply(self, sampling=None, *, fresh_seed: bool = False, **overrides) -> Iterator:
        """Stream a bot turn under the current node; at its end the reply becomes the current node.

        `sampling` (default: the chat's) with keyword overrides; the reply always stops at a blank line.
        """
        branch = self.reply_branch(sampling, fresh_seed=fresh_seed, **overrides)
        return self.follow(self.tree.generate(self.current, branch.sampling, role=BOT, label=branch.label))

    def reply_branch(self, sampling=None, *, fresh_seed: bool = False, **overrides) -> Branch:
        """What a bot turn under the current (user) node generates: the settings (`sampling`, default the
        chat's, with the overrides) made a reply's (reply_settings), a fresh seed if asked, the preset's name.
        Every reply is made from it: the library's (reply) and the app's, which streams it on the engine."""
        if self.tree.node(self.current).role != USER:
            raise SessionError("the bot replies to a user turn: send a message first")
        spec = sampling or self.sampling
        settings = resolve_sampling(spec, overrides)
        settings = reply_settings(settings, self.tree.tokenizer).replace(**({"seed": None} if fresh_seed else {}))
        return Branch(settings, label=spec if isinstance(spec, str) else None)

    def retry(self, sampling=None, **overrides) -> Iterator:
        """A new reply to the same user turn, with a fresh seed unless one is given; the current reply stays
        as a branch beside it."""
        self.to_user_turn()
        return self.reply(sampling, fresh_seed=overrides.get("seed") is None, **overrides)

    def to_user_turn(self) -> str:
        """Retrying: from a bot reply, back to the user turn it answered (the reply stays as a branch)."""
        node = self.tree.node(self.current)
        if node.role == BOT:
            self.current = node.parent
        if self.tree.node(self.current).role != USER:
            raise SessionError("nothing to retry: send a message first")
        return self.current

    def undo(self) -> Change:
        """Step back before the last user turn (it and its reply stay in the tree as a branch)."""
        for node in reversed(self.tree.path(self.current)):
            if node.role == USER:
                self.current = node.parent
                return Change(node.parent)
        raise SessionError("nothing to undo")

    def edit(self, node_id: str, message: str) -> Change:
        """A new version of a message beside the old one; the conversation moves to it.

        A user message: then call reply() for the bot's answer to it. A bot message: its text is replaced.
        """
        node = self.tree.node(node_id)
        if node.role == USER:
            change = self.add_user(node.parent, message, {"edited_from": node.id})
        elif node.role == BOT:
            text = " " + clean_message(message)
            change = self.tree.extend_tokens(node.parent, self.tree.tokenizer.encode(text + TURN_SEPARATOR), BOT,
                                             text, {"edited_from": node.id})
        else:
            raise SessionError(f"only user and bot messages can be edited, not a {node.role} node")
        self.current = change.node
        return change

    def goto(self, node_id: str) -> Change:
        """Switch the conversation to another node (another branch)."""
        self.current = node_id
        return Change(node_id)

    def delete(self, node_id: str) -> Change:
        """Delete a turn and everything after it; the conversation moves up if it was inside."""
        inside = any(node.id == node_id for node in self.tree.path(self.current))
        change = self.tree.delete(node_id)
        if inside:
            self.current = change.node
        return change

    # ---- reading -------------------------------------------------------------------------------------
    def messages(self, node_id: str | None = None) -> list[dict[str, str]]:
        return self.tree.chat_messages(node_id or self.current)

    def siblings(self, node_id: str) -> list[str]:
        """The alternatives to a turn (itself included, same role), in creation order: the UI's "‹ 2/3 ›".
        A conversation's first message has only its own edits: other conversations (and the playground's
        texts) start from the same root but are not its branches."""
        node = self.tree.node(node_id)
        if node.parent is None:
            return [node.id]
        parent = self.tree.node(node.parent)
        same = [c for c in parent.children if self.tree.node(c).role == node.role]
        if parent.role in (*STARTS, SYSTEM):
            origin = self.edit_origin(node.id)
            same = [c for c in same if self.edit_origin(c) == origin]
        return same

    def edit_origin(self, node_id: str) -> str:
        """The message an edit chain started from (the node itself when it is no edit)."""
        node = self.tree.node(node_id)
        while node.meta.get("edited_from") in self.tree.nodes:
            node = self.tree.node(node.meta["edited_from"])
        return node.id

    # ---- helpers -------------------------------------------------------------------------------------
    def add_user(self, parent: str, message: str, meta: dict | None = None) -> Change:
        text = clean_message(message)
        tail = self.tree.tokenizer.decode(self.tree.path_tokens(parent)[-16:])
        tokens = self.tree.tokenizer.encode(self.format.user_turn(text, separator_after(tail)))
        if self.format.prefill:
            meta = {**(meta or {}), "prefill": self.format.prefill}
        return self.tree.extend_tokens(parent, tokens, USER, text, meta)

    def follow(self, events: Iterator) -> Iterator:
        for item in events:
            if isinstance(item, Change):
                self.current = item.node
            yield item
