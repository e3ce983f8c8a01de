"""Chat messages as RWKV chat text, built from the session's own chat format (rwkv_app/state_tree/chat.py).

The text is a list of segments, each encoded on its own, the way a ChatSession encodes its turns: a user turn
("User: ...\\n\\nBot:") is one segment and a past assistant reply another (" reply\\n\\n", what a generated
reply's tokens hold once it stopped at the blank line). So sending a whole conversation gives the same tokens
as continuing a kept state with only its last message.
"""
from __future__ import annotations

from ..state_tree.chat import TURN_SEPARATOR, ChatFormat, clean_message, separator_after


def chat_format_for(model) -> ChatFormat:
    """The model family's chat names: `model.chat_format` (a ChatFormat, or a function returning one) when the
    family provides it, else the RWKV-4 Raven/World format (User / Bot)."""
    provided = getattr(model, "chat_format", None)
    provided = provided() if callable(provided) else provided
    return provided if isinstance(provided, ChatFormat) else ChatFormat()


def chat_segments(messages, fmt: ChatFormat, tail: str) -> list[str]:
    """The text segments that add `messages` after a path whose text ends with `tail`."""
    segments: list[str] = []

    def lead() -> str:
        return separator_after((tail + "".join(segments))[-16:])

    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            if content.strip():
                segments.append(lead() + content.strip() + TURN_SEPARATOR)
        elif role == "user":
            segments.append(fmt.user_turn(clean_message(content), lead()))
        else:
            cue = "" if (tail + "".join(segments)).endswith(f"{fmt.bot}:") else f"{lead()}{fmt.bot}:"
            if cue:
                segments.append(cue)
            segments.append(" " + clean_message(content) + TURN_SEPARATOR)
    return segments


def shown_reply(text: str) -> str:
    """A reply as OpenAI's clients expect it, without the one space the chat format puts after the bot's name
    ("Bot: reply"); chat_segments puts it back when the reply comes again as an assistant message."""
    return text[1:] if text.startswith(" ") else text
