"""The session store end to end (issue 20), app.py in subprocesses driven by gradio_client: a restart resumes a
visitor's conversation; kill -9 in the middle of a reply, then a restart, loses no completed turn and keeps no piece
of the interrupted one; two replicas sharing one Redis resume each other's conversations token for token, and a
stale replica's write is refused (saved as a copy), never mixed in. Slow: each app start loads the demo model."""
import signal
import time

import pytest

from benchmarks.soak_server import AppProcess

from .store_helpers import redis_server

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")

CHAT = ("balanced", 1.0, 1.0, 0, 1.0, 24)  # /chat's knobs after the message: preset, temperature... max_new_tokens


def visitor(app, key=""):
    client = gradio_client.Client(app.url, verbose=False)
    return client, client.predict(key, api_name="/identify")


def tree(client):
    """The conversation as plain data: each node's id, parent, role, text and token count."""
    return [{k: row[k] for k in ("id", "parent", "role", "text", "tokens")} for row in client.predict(api_name="/tree")]


def chat(client, text, tokens=24):
    return client.predict(text, *CHAT[:-1], tokens, api_name="/chat")


def test_kill_9_mid_reply_then_restart_keeps_every_completed_turn(tmp_path):
    args = ("--data-dir", str(tmp_path / "data"))
    with AppProcess(extra_args=args) as app:
        client, key = visitor(app)
        chat(client, "Good morning")
        chat(client, "How is your sister?")
        completed = tree(client)
        # a long greedy generation (a chat reply of the demo model may end at its first blank line before the kill)
        job = client.submit("Tell me a very long story", "deterministic", 500, 1, api_name="/generate")
        while len(job.outputs()) < 3:  # it is streaming
            time.sleep(0.05)
        app.process.send_signal(signal.SIGKILL)
        app.process.wait(10)
        client.close()
    with AppProcess(extra_args=args) as restarted:
        back, same = visitor(restarted, key)
        assert same == key
        assert tree(back) == completed  # every completed turn, nothing of the interrupted one
        listed = back.predict(api_name="/conversations")
        assert [c["name"] for c in listed] == ["Good morning"] and listed[0]["current"]
        chat(back, "And then?")  # it goes on where it was
        assert len(tree(back)) == len(completed) + 2
        back.close()


@pytest.fixture
def redis_url(tmp_path):
    with redis_server(tmp_path / "redis") as url:
        yield url


def test_two_replicas_on_one_redis_resume_each_others_conversations(redis_url):
    with AppProcess(extra_args=("--store", redis_url)) as one, AppProcess(extra_args=("--store", redis_url)) as two:
        a, key = visitor(one)
        chat(a, "Hello from replica one")
        made_on_one = tree(a)
        b, _ = visitor(two, key)  # the same visitor, sent to the other replica by the load balancer
        assert tree(b) == made_on_one
        prompt = made_on_one[-1]["id"]
        on_two = b.predict(prompt, " Then", "deterministic", 30, 1, api_name="/continue")
        with pytest.raises(Exception, match="changed elsewhere"):  # replica one's copy is stale: not mixed in
            chat(a, "a stale write")
        original = next(c["id"] for c in b.predict(api_name="/conversations") if c["current"])
        a.predict(original, False, api_name="/open_conversation")  # replica one reopens it: B's branch is there
        assert [n for n in tree(a) if n["id"] in {r["id"] for r in tree(b)}] == tree(b)
        on_one = a.predict(prompt, " Then", "deterministic", 30, 1, api_name="/continue")
        assert on_one == on_two  # the state resumed on either replica continues with the same tokens
        names = sorted(c["name"] for c in a.predict(api_name="/conversations"))
        assert names == ["Hello from replica one", "Hello from replica one (copy)"]
        stranger, _ = visitor(two)  # another visitor on the same replica and store sees nothing of it
        assert stranger.predict(api_name="/conversations") == [] and len(tree(stranger)) == 1
        with pytest.raises(Exception, match="not yours"):
            stranger.predict(original, True, api_name="/open_conversation")
        a.close(), b.close(), stranger.close()
