"""The Chat tab's actions on a UserSession (a mixin: it uses the session's tree, chat, engine, lock and current
node; user_session.UserSession is the one class that includes it). Every reply runs through the same runner as the
Playground; messages come back as plain data (the Chatbot's role/content dicts).
"""
from __future__ import annotations

from contextlib import closing
from typing import Iterator

from ..errors import InputError
from ..state_tree import Branch, ChatSession, SessionError
from ..state_tree.nodes import BOT, SYSTEM, USER, prefill_of
from . import views
from .conversations import saves
from .runner import stream_rows


class ChatActions:
    def ensure_chat(self, system: str | None, user: str | None, bot: str | None, start: str | None = None,
                    thinking: str | None = None) -> ChatSession:
        """The open chat, else a new one with these settings (`thinking` ignored where the family has no thinking
        format: RWKV-4)."""
        if self.chat is None:
            thinking = (thinking or "auto") if self.tree.family.thinking_format else "auto"
            self.chat = ChatSession(self.tree, user=user or None, bot=bot or None, system=system or None,
                                    start=start if start in self.tree.nodes else None, thinking=thinking)
        return self.chat

    def chat_settings(self) -> dict:
        """The open chat's system prompt, names and thinking, and whether the model has a thinking format (plain
        data, views.chat_settings; no chat yet: the model's defaults)."""
        return views.chat_settings(self.tree.family, self.tree.meta.get("chat") if self.chat is not None else None)

    def new_chat(self, system: str | None, user: str | None, bot: str | None, start: str | None = None,
                 thinking: str | None = None) -> None:
        """Start a new conversation (the old one stays in the tree), from the empty state or `start` (a state root);
        `thinking`: auto / think / no_think (state_tree.chat.THINKING)."""
        self.chat = None
        self.ensure_chat(system, user, bot, start, thinking)

    def chat_send(self, message: str, branch: Branch, system=None, user=None, bot=None,
                  thinking=None) -> Iterator[list[dict]]:
        self.check_text(message)
        chat = self.ensure_chat(system, user, bot, thinking=thinking)
        if self._busy.locked():  # fail at the call; the reply adds the turn only once it holds the lock
            raise InputError("this session is already generating: wait for it or press Stop")

        def add_turn() -> None:
            chat.current = chat.add_user(chat.current, message).node
        return self._reply(branch, add_turn)

    def chat_retry(self, branch: Branch) -> Iterator[list[dict]]:
        """A new reply to the chat's last user turn, with a fresh seed unless one was given."""
        self.require_chat().to_user_turn()
        return self._reply(branch)

    def _reply(self, branch: Branch, add_turn=None) -> Iterator[list[dict]]:
        """Stream a bot turn under the chat's current node (the chat's reply_branch, run on the engine);
        `add_turn` (the user's message) runs first, under the session's lock, so a turn is never added while
        another generation runs."""
        chat = self.chat
        with self.busy() as job:
            if add_turn is not None:
                add_turn()
            reply = chat.reply_branch(branch.sampling, fresh_seed=branch.seed is None)
            reply = Branch(reply.sampling, seed=branch.seed, label=branch.label)
            parent, before = chat.current, chat.messages()
            prefill = prefill_of(self.tree.node(parent))  # the reply's opening, e.g. " <think"
            yield before + [{"role": "assistant", "content": prefill.strip()}]
            try:
                with closing(stream_rows(self.engine, self.tree, parent, [reply], BOT, job)) as stream:
                    for _, value in stream:
                        yield before + [{"role": "assistant", "content": (prefill + value).strip()}]
            finally:
                self.last_run = [n for n in job.nodes if n]
                if self.last_run:  # the reply is the chat's place and the session's selected node (State, Compare)
                    chat.current = self.current = self.last_run[0]
        yield chat.messages()

    def require_chat(self) -> ChatSession:
        if self.chat is None:
            raise SessionError("no conversation yet: send a message first")
        return self.chat

    @saves
    def chat_undo(self) -> list[dict]:
        self.require_chat().undo()
        return self.chat.messages()

    def chat_undo_to_box(self) -> tuple[list[dict], str]:
        """chat_undo, plus the undone message's text, which the page puts back in the message box (as Gradio's
        ChatInterface does), so an undo to fix a typo costs no retyping."""
        shown = self.require_chat().messages()
        text = next((m["content"] for m in reversed(shown) if m["role"] == "user"), "")
        return self.chat_undo(), text if isinstance(text, str) else ""

    def turns(self) -> list[str]:
        """The node of each message shown (system, user and bot turns on the conversation's path)."""
        if self.chat is None:
            return []
        nodes = [n for n in self.tree.path(self.chat.current) if n.role in (SYSTEM, USER, BOT)]
        merged: list = []
        for node in nodes:  # consecutive nodes of one role are one message, as chat_messages shows them
            if merged and self.tree.node(merged[-1]).role == node.role:
                merged[-1] = node.id
            else:
                merged.append(node.id)
        return merged

    def turn_node(self, index: int) -> str:
        turns = self.turns()
        if not 0 <= int(index) < len(turns):
            raise InputError(f"there is no message {index} in this conversation")
        return turns[int(index)]

    @saves
    def chat_edit(self, index: int, text: str) -> list[dict]:
        self.check_text(text)
        self.require_chat().edit(self.turn_node(index), text)
        return self.chat.messages()

    @saves
    def chat_switch(self, index: int, step: int) -> list[dict]:
        """Show the previous (-1) or next (+1) sibling of message `index` as it was last seen (a message
        without alternatives stays as it is); a turn that was undone stays undone."""
        node_id = self.turn_node(index)
        siblings = self.require_chat().siblings(node_id)
        target = siblings[(siblings.index(node_id) + int(step)) % len(siblings)]
        self.chat.goto(self.chat.last_seen(target))
        return self.chat.messages()

    def chat_edit_reply(self, index: int, text: str, branch: Branch) -> Iterator[list[dict]]:
        """ChatGPT's edit: a new version of message `index` beside the old one; an edited user message
        gets a new reply (streamed), an edited bot message is simply replaced."""
        self.check_text(text)
        node = self.tree.node(self.turn_node(index)) if self.chat is not None else None
        messages = self.chat_edit(index, text)
        if node.role != USER:
            yield messages
            return
        yield from self._reply(branch)

    @saves
    def chat_clear(self) -> list[dict]:
        """The Chatbot's clear button: a new conversation with the same system prompt and names (the old one
        stays in the tree)."""
        saved = (self.tree.meta.get("chat") or {}) if self.chat is not None else {}
        self.new_chat(saved.get("system"), saved.get("user"), saved.get("bot"), saved.get("start"),
                      saved.get("thinking"))
        return self.chat.messages()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until this session's running generation (if any) ends; False if it still runs after `timeout`."""
        if not self._busy.acquire(timeout=timeout):
            return False
        self._busy.release()
        return True

    def chat_branches(self) -> list[dict]:
        """Each message with alternatives: {"index", "at" (1-based), "of"}: the UI's "‹ 2/3 ›"."""
        marks = []
        for index, node_id in enumerate(self.turns()):
            siblings = self.chat.siblings(node_id)
            if len(siblings) > 1:
                marks.append({"index": index, "at": siblings.index(node_id) + 1, "of": len(siblings)})
        return marks
