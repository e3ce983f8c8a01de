"""Chat on the session tree: the RWKV chat format, the double-newline stop, retry, undo, edit, branches."""
import io

import pytest

from rwkv_app import SamplingSettings
from rwkv_app.core.sampling import SettingsError
from rwkv_app.state_tree import ChatSession, SessionError, SessionTree, export_session, import_session
from rwkv_app.state_tree.chat import clean_message

from .session_helpers import assert_resumes_exactly, run, tiny_tree

HI, NEWLINE = 399, 199  # " hi" and "\n" in the test tokenizer


def scripted_reply(**changes) -> SamplingSettings:
    """Greedy, biased to say " hi" and then (its presence penalised) a blank line."""
    values = dict(logit_bias={HI: 100.0, NEWLINE: 90.0}, presence_penalty=50.0, max_new_tokens=10)
    return SamplingSettings(**{**values, **changes})


def chat_tree(**kwargs):
    tree = tiny_tree()
    assert tree.tokenizer.encode(" hi") == [HI] and tree.tokenizer.encode("\n\n") == [NEWLINE, NEWLINE]
    return tree, ChatSession(tree, system="You are helpful.", sampling=scripted_reply(), **kwargs)


def test_a_conversation_whose_user_and_bot_names_are_the_same_is_refused_naming_both():
    """"User: hi" and "User: hello" on both sides: the model could not tell whose turn a line is."""
    tree = tiny_tree()
    for user, bot in (("User", "User"), ("user ", " USER"), ("Ann  Lee", "ann lee"), ("Bot", None), (None, "user")):
        with pytest.raises(SessionError, match=r"user name .* and the bot name .* are the same"):
            ChatSession(tree, user=user, bot=bot)
    assert tree.node(tree.root).children == []  # nothing was added
    assert ChatSession(tree, user="Ann", bot="Annie").format.bot == "Annie"
    tree.meta["chat"]["bot"] = "Ann"  # a conversation saved before the check, with equal names, still opens
    assert ChatSession.resume(tree).format.bot == "Ann"


def test_turns_follow_the_rwkv_chat_format_and_stop_at_a_blank_line():
    tree, chat = chat_tree()
    items = run(chat.send("hello there"))
    finish, done = items[-2], items[-1]
    bot = tree.node(done.node)
    assert chat.current == bot.id and bot.role == "bot" and finish.reason == "stop"
    assert list(bot.tokens) == [HI, NEWLINE, NEWLINE] and bot.text == " hi"  # the state took in the blank line
    run(chat.send("how\r\n\r\nare you?"))
    assert tree.path_text(chat.current) == ("You are helpful.\n\nUser: hello there\n\nBot: hi\n\n"
                                            "User: how\nare you?\n\nBot: hi\n\n")
    assert chat.messages() == [{"role": "system", "content": "You are helpful."},
                               {"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"},
                               {"role": "user", "content": "how\nare you?"}, {"role": "assistant", "content": "hi"}]
    assert_resumes_exactly(tree, chat.current)


def test_a_reply_never_starts_with_a_line_break():
    """A model that would end its turn at once (a blank line first) still says something."""
    tree, chat = chat_tree()
    run(chat.send("hello", logit_bias={NEWLINE: 200.0, HI: 100.0}, presence_penalty=0.0))
    bot = tree.node(chat.current)
    assert bot.tokens[0] == HI and bot.text == " hi"
    assert NEWLINE in tree.tokenizer.line_break_start_ids()


def test_a_reply_cut_by_length_gets_its_separator_before_the_next_turn():
    tree, chat = chat_tree(user="Alice", bot="Assistant")
    run(chat.send("hi", max_new_tokens=1))
    run(chat.send("again"))
    assert tree.path_text(chat.current).endswith("Assistant: hi\n\nAlice: again\n\nAssistant: hi\n\n")


def test_retry_undo_edit_and_branches():
    tree, chat = chat_tree()
    run(chat.send("hello"))
    first = chat.current
    user_turn = tree.node(first).parent
    second = run(chat.retry())[-1].node
    assert chat.current == second and tree.node(second).parent == user_turn and chat.siblings(second) == [first, second]
    assert chat.undo().node == tree.node(user_turn).parent and chat.messages()[-1]["role"] == "system"
    run(chat.send("bye"))
    assert [m["content"] for m in chat.messages()][1:] == ["bye", "hi"]
    edited = chat.edit(user_turn, "hello again")
    assert chat.current == edited.node and tree.node(edited.node).meta["edited_from"] == user_turn
    run(chat.reply())
    assert [m["content"] for m in chat.messages()][1:] == ["hello again", "hi"]
    chat.edit(chat.current, "Hey!\n\nthere")
    assert chat.messages()[-1] == {"role": "assistant", "content": "Hey!\nthere"}
    assert_resumes_exactly(tree, chat.current)
    chat.goto(first)
    assert [m["content"] for m in chat.messages()][1:] == ["hello", "hi"]  # the old branch is intact
    system = tree.node(user_turn).parent
    change = chat.delete(user_turn)
    assert change.node == system == chat.current and first not in tree.nodes and second not in tree.nodes


def test_a_chat_survives_export_and_import():
    tree, chat = chat_tree()
    run(chat.send("hello"))
    buffer = io.BytesIO()
    export_session(tree, buffer)
    copy = ChatSession.resume(import_session(buffer.getvalue(), tree.model, tree.tokenizer))  # settings saved too
    assert copy.current == chat.current and copy.messages() == chat.messages()
    run(copy.send("more"))
    run(chat.send("more"))
    assert copy.tree.path_tokens(copy.current) == tree.path_tokens(chat.current)


def test_bad_chat_input_is_refused():
    tree, chat = chat_tree()
    with pytest.raises(SessionError, match="cannot be empty"):
        chat.send(" \n\n ")
    with pytest.raises(SettingsError, match="top_p"):
        chat.send("hi", top_p=2.0)
    assert chat.current == chat.tree.node(chat.tree.root).children[0]  # no turn was added
    with pytest.raises(SessionError, match="replies to a user turn"):
        chat.reply()
    with pytest.raises(SessionError, match="nothing to undo"):
        chat.undo()
    with pytest.raises(SessionError, match="chat names"):
        ChatSession(tree, user="User:")
    with pytest.raises(SessionError, match="no tokenizer"):
        ChatSession(SessionTree(tree.model))
    assert clean_message("  a\r\n\r\n\r\nb  ") == "a\nb"
