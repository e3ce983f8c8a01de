""""‹ 2/3 ›" on each chat message that has alternatives, as ChatGPT shows them.

Gradio's Chatbot has no per-message control for this, so a hidden gr.HTML holds the marks (plain data from the
session) and its script draws them under the matching messages and sends a click as the HTML's own event,
with {index, step}. The script only draws; which branch is shown is decided on the server. The arrows are 32 px
squares and the row never wraps, so on a phone "‹ 2/3 ›" is one line of buttons a finger can hit.
"""
from __future__ import annotations

import re

from ..errors import InputError

THOUGHT = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)  # as the Chatbot's reasoning_tags split a message

BRANCH_JS = r"""
const draw = () => {
  const chat = document.querySelector('#chatbot');
  if (!chat) return;
  const marks = new Map((props.value || []).map(m => [m.row, m]));
  const messages = [...chat.querySelectorAll('.message-wrap .message-row')];
  messages.forEach((row, index) => {
    const mark = marks.get(index);
    const after = row.nextElementSibling && row.nextElementSibling.classList.contains('message-buttons') ? row.nextElementSibling : row;
    let nav = after.nextElementSibling && after.nextElementSibling.classList.contains('branch-nav') ? after.nextElementSibling : null;
    const label = mark ? `${mark.at}/${mark.of}` : null;
    if (!label) { if (nav) nav.remove(); return; }
    if (nav && nav.dataset.label === label && nav.dataset.index === String(mark.index)) return;
    if (!nav) {
      nav = document.createElement('div');
      nav.className = 'branch-nav';
      const side = row.classList.contains('user-row') ? 'flex-end' : 'flex-start';
      nav.style.cssText = `display:flex;flex-wrap:nowrap;white-space:nowrap;gap:2px;align-items:center;`
        + `justify-content:${side};font-size:13px;margin:0 12px;`;
      after.insertAdjacentElement('afterend', nav);
    }
    nav.dataset.label = label; nav.dataset.index = String(mark.index);
    nav.innerHTML = '';
    for (const [text, step, name] of [['‹', -1, 'previous'], [label, 0, ''], ['›', 1, 'next']]) {
      const part = document.createElement(step ? 'button' : 'span');
      part.textContent = text;
      if (step) {
        part.className = `branch-${name}`;
        part.title = `${name} version of this message`;
        part.style.cssText = 'border:none;background:none;cursor:pointer;font-size:18px;line-height:1;padding:0;'
          + 'min-width:32px;min-height:32px;flex:none;border-radius:6px;';  // a finger's size on a phone
        part.addEventListener('click', e => { e.stopPropagation(); trigger('click', {index: mark.index, step}); });
      } else { part.className = 'branch-count'; part.style.cssText = 'flex:none;white-space:nowrap;'; }
      nav.appendChild(part);
    }
  });
};
let queued = false;  // at most one drawing per frame, however fast a reply streams
new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; draw(); }); } })
  .observe(document.body, {childList: true, subtree: true});
watch('value', draw);
draw();
"""


def branch_marks(session) -> list[dict]:
    """The marks the script draws: [{"index", "at", "of"}] for each message with alternatives."""
    if session is None or session.chat is None:
        return []
    marks = session.chat_branches()
    shown = [m["role"] != "system" for m in session.chat.messages()]  # the Chatbot draws no system message
    return [{**mark, "row": sum(shown[:mark["index"]])} for mark in marks]


def shown_parts(text: str) -> list[bool]:
    """How the Chatbot (reasoning_tags) shows one message: a part per thought (True) or prose piece (False),
    empty parts left out, in order."""
    parts, last = [], 0
    for match in THOUGHT.finditer(text):
        if text[last:match.start()].strip():
            parts.append(False)
        if match.group(1).strip():
            parts.append(True)
        last = match.end()
    if text[last:].strip():
        parts.append(False)
    return parts


def message_index(messages: list[dict], shown: int) -> int | None:
    """The conversation's message behind the Chatbot's message `shown` (thoughts are messages of their own
    there); None when it is a thought."""
    position = 0
    for index, message in enumerate(messages):
        for thought in shown_parts(str(message.get("content", ""))):
            if position == shown:
                return None if thought else index
            position += 1
    raise InputError(f"there is no message {shown} in this conversation")


def edit_text(value) -> str:
    """The text of an edited message as the Chatbot's edit event gives it (a string, or its text parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text", ""))
    if isinstance(value, list):
        return "".join(edit_text(part) for part in value)
    return ""
