"""One soak user: its own gradio_client Client (= its own session in the app), a seeded random mix of actions,
one action per round, and what it saw (timed samples, errors, expected refusals)."""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field

from .soak_calls import Sample, cancel_mid_stream, drop_mid_stream, is_refusal, stream

# (action, weight): what a visitor does in one round
ACTIONS = (("generate", 3), ("chat", 3), ("fork", 2), ("compare", 2), ("export_import", 1), ("preset", 1),
           ("cancel", 1), ("disconnect", 1))
PRESETS = ("balanced", "chat", "chatrwkv", "creative", "deterministic")
PROMPTS = ("It is a truth universally acknowledged", "Mr. Darcy walked", "The morning was fine, and",
           "Elizabeth could not help", "Dear Jane,", "In the drawing room at Netherfield")
MESSAGES = ("Hello, how are you today?", "Tell me about the weather.", "What do you think of Mr. Bingley?",
            "And then?", "Why?", "Shall we walk to Meryton?")


def plan(seed: int, user: int, users: int, rounds: int) -> list[str]:
    """The user's action for each round. The first rounds go through every action across the users (so even
    a short soak does each), then a weighted random choice from the user's own seeded generator."""
    rng = random.Random(f"soak-{seed}-{user}")
    names, weights = zip(*ACTIONS)
    actions = []
    for round_index in range(rounds):
        slot = round_index * users + user
        actions.append(names[slot] if slot < len(names) else rng.choices(names, weights)[0])
    return actions


@dataclass
class UserLog:
    """What one user saw over the soak."""

    user: int
    samples: list[Sample] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    sessions: int = 1  # clients (= app sessions) this user opened

    def failed(self, action: str, err: BaseException) -> None:
        text = f"user {self.user}, {action}: {type(err).__name__}: {err}"
        (self.refusals if is_refusal(str(err)) else self.errors).append(text[:300])


class SoakUser:
    """Drives one session; `act(name)` runs one action, catching and logging anything it raises."""

    def __init__(self, url: str, user: int, seed: int, tokens: tuple[int, int], download_dir: str):
        self.url, self.rng = url, random.Random(f"soak-args-{seed}-{user}")
        self.tokens, self.download_dir = tokens, download_dir
        self.log = UserLog(user)
        self.client = self.connect()
        self.ready = False  # the session's current node holds text (fork and compare continue from it)

    def connect(self):
        """A new client (a new app session) identified by this user's visitor key (its conversations resume)."""
        from gradio_client import Client

        client = Client(self.url, verbose=False, download_files=self.download_dir)
        self.key = client.predict(getattr(self, "key", ""), api_name="/identify")
        return client

    def reconnect(self) -> None:
        """After the app restarted: the old client's session is gone; a new one resumes the conversation."""
        self.client.close()
        self.client = self.connect()
        self.log.sessions += 1
        self.ready = False

    def node_ids(self) -> set[str]:
        """The ids of every node of the conversation the user's session holds (what a restart must keep)."""
        return {row["id"] for row in self.client.predict(api_name="/tree")}

    def length(self) -> int:
        return self.rng.randint(*self.tokens)

    def act(self, action: str) -> None:
        self.log.actions[action] = self.log.actions.get(action, 0) + 1
        try:
            getattr(self, "do_" + action)()
        except Exception as err:  # noqa: BLE001: every failure is counted and reported, the soak goes on
            self.log.failed(action, err)
            self.ready = False  # after a refusal or an error, start again from a fresh generation

    def close(self) -> None:
        self.client.close()

    def timed(self, api_name: str, *args):
        output, sample = stream(self.client, api_name, *args)
        self.log.samples.append(sample)
        return output

    # ---- the actions ---------------------------------------------------------------------------------
    def do_generate(self, preset: str | None = None) -> None:
        self.timed("/generate", self.rng.choice(PROMPTS), preset or self.rng.choice(PRESETS), self.length(),
                   self.rng.randint(0, 9999))
        self.ready = True

    def ensure_ready(self) -> None:
        if not self.ready:
            self.do_generate()

    def chat_args(self, preset: str, knobs=(1.0, 0.7, 0, 1.0, 0.0, 0.0)) -> tuple:
        """/chat's inputs; `knobs` as /chat_preset_settings returns them (temperature, top_p, top_k,
        repetition_penalty, presence_penalty, frequency_penalty): the two penalties go last."""
        return (self.rng.choice(MESSAGES), preset, *knobs[:4], self.length(), "", "User", "Bot", *knobs[4:])

    def do_chat(self) -> None:
        for _ in range(self.rng.randint(1, 2)):  # multi-turn: the chat goes on from the session's last turn
            self.timed("/chat", *self.chat_args("chat"))

    def do_fork(self) -> None:
        """Rewind the current node to its first token, resample from there, then continue with added text."""
        self.ensure_ready()
        seed = self.rng.randint(0, 9999)
        self.timed("/rewind", None, 1, self.rng.choice(PRESETS), self.length(), seed)
        self.timed("/continue", None, " And then", self.rng.choice(PRESETS), self.length(), seed + 1)

    def do_compare(self) -> None:
        self.ensure_ready()
        count = self.rng.choice((2, 3))
        columns = [value for i in range(4) for value in (self.rng.choice(PRESETS), self.rng.randint(0, 9999))]
        texts = self.timed("/compare", count, self.length(), *columns)
        filled = [i for i, text in enumerate(texts[:count]) if text]
        if filled:
            self.client.predict(api_name=f"/keep_{self.rng.choice(filled) + 1}")
        self.ready = bool(filled)

    def do_export_import(self) -> None:
        from gradio_client import handle_file

        self.ensure_ready()
        path = self.client.predict(api_name="/export_session")
        try:
            status = self.client.predict(handle_file(path), api_name="/import_session")
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        if "Resumed" not in status:
            raise RuntimeError(f"import answered {status!r}")
        self.ready = False  # the resumed session is at its root (or its chat)

    def do_preset(self) -> None:
        """Switch the chat's sampling preset (the knobs follow it), then chat and generate with it."""
        name = self.rng.choice(PRESETS)
        knobs = self.client.predict(name, api_name="/chat_preset_settings")
        self.timed("/chat", *self.chat_args(name, tuple(knobs)))
        self.do_generate(name)

    def do_cancel(self) -> None:
        """Cancel a long generation after a few updates (Job.cancel()); the session then generates again."""
        args = (self.rng.choice(PROMPTS), self.rng.choice(PRESETS), self.tokens[1], self.rng.randint(0, 9999))
        cancel_mid_stream(self.client, "/generate", args, self.rng.randint(1, 4))
        self.do_generate()

    def do_disconnect(self) -> None:
        """Close the connection mid-stream (a closed tab); later rounds use a new client, a new session."""
        args = (self.rng.choice(PROMPTS), self.rng.choice(PRESETS), self.tokens[1], self.rng.randint(0, 9999))
        try:
            drop_mid_stream(self.client, "/generate", args, self.rng.randint(1, 4))
        finally:
            self.client.close()
            self.client = self.connect()
            self.log.sessions += 1
            self.ready = False
