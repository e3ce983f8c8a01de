"""G1 thinking: the chat's prefills (the model card's think / fake-think prompts), the raw reply kept in the tree,
and the Chatbot folding <think>...</think> into a thought (done, or pending while open)."""
import pytest

from rwkv_app.state_tree import ChatSession, SessionError, SessionTree
from rwkv_app.state_tree.chat import ChatFormat
from rwkv_app.state_tree.nodes import BOT

from .session_helpers import run, tiny_model
from .test_tokenizer import build_tokenizer

gr = pytest.importorskip("gradio")
from rwkv_app.ui.chat_branches import message_index, shown_parts  # noqa: E402
from rwkv_app.ui.chat_events import REASONING_TAGS  # noqa: E402

REPLY = " <think>\nThey greet me.\n</think>\nHello!"


def test_the_user_turn_ends_with_the_g1_prefills():
    assert ChatFormat("User", "Assistant").user_turn("Hi", "").endswith("\n\nAssistant:")
    assert ChatFormat("User", "Assistant", "think").user_turn("Hi", "").endswith("\n\nAssistant: <think")
    assert ChatFormat("User", "Assistant", "no_think").user_turn("Hi", "").endswith("Assistant: <think>\n</think")
    with pytest.raises(SessionError, match="thinking must be one of"):
        ChatFormat("User", "Assistant", "sometimes")


def chat_with_forced_reply(thinking: str, reply_tokens_text: str):
    tree = SessionTree(tiny_model(3, vocab_size=400), build_tokenizer(), model_id="tiny")
    chat = ChatSession(tree, user="User", bot="Assistant", thinking=thinking)
    chat.current = chat.add_user(chat.current, "Hi").node
    tokens = tree.tokenizer.encode(reply_tokens_text + "\n\n")  # the reply forced through the tree
    chat.current = tree.extend_tokens(chat.current, tokens, BOT, reply_tokens_text).node
    return tree, chat


def test_a_think_reply_stays_raw_in_the_tree_and_reads_whole_in_the_messages():
    tree, chat = chat_with_forced_reply("auto", REPLY)
    assert "Assistant: <think>\nThey greet me.\n</think>\nHello!" in tree.path_text(chat.current)
    assert chat.messages()[-1] == {"role": "assistant", "content": REPLY.strip()}


def test_a_prefilled_think_opening_is_part_of_the_reply_shown():
    tree, chat = chat_with_forced_reply("think", ">\nThey greet me.\n</think>\nHello!")
    assert tree.path_text(chat.current).count("<think>") == 1  # the prefill is in the user turn's tokens
    assert chat.messages()[-1]["content"] == REPLY.strip()
    _, no_think = chat_with_forced_reply("no_think", ">\nHello!")
    assert no_think.messages()[-1]["content"] == "<think>\n</think>\nHello!"


def test_a_streamed_reply_is_prefilled_too():
    tree = SessionTree(tiny_model(3, vocab_size=400), build_tokenizer(), model_id="tiny")
    chat = ChatSession(tree, user="User", bot="Assistant", thinking="think")
    run(chat.send("Hi", max_new_tokens=3))
    assert chat.messages()[-1]["content"].startswith("<think")


def test_the_chatbot_folds_a_thought_done_or_pending():
    chatbot = gr.Chatbot(reasoning_tags=REASONING_TAGS)
    shown = chatbot.postprocess([{"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": REPLY.strip()}]).model_dump()
    assert [(m["role"], (m.get("metadata") or {}).get("status")) for m in shown] == \
        [("user", None), ("assistant", "done"), ("assistant", None)]
    assert shown[1]["content"][0]["text"] == "They greet me." and shown[2]["content"][0]["text"] == "Hello!"
    streaming = chatbot.postprocess([{"role": "assistant", "content": "<think>\nThey gre"}]).model_dump()
    assert streaming[0]["metadata"]["status"] == "pending"


def test_message_indices_as_shown_map_back_to_the_conversation():
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": REPLY.strip()}, {"role": "user", "content": "More"}]
    assert shown_parts(REPLY) == [True, False]
    assert [message_index(messages, i) for i in range(5)] == [0, 1, None, 2, 3]
