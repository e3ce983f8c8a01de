"""The API's service: which models a client may name, and a checked request turned into what the engine runs.

`prepare` runs in a worker thread (it may load a model or recompute a dropped state): it resolves the model
and the key's tree, finds the node to continue from (the root, or `state_id`), tokenizes the new text and
resolves one SamplingSettings per choice. Nothing is queued yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, check_token_range
from ..services.default_model import DEMO_NAME, resolve_demo
from ..core.sampling import SamplingSettings
from ..state_tree.chat import reply_settings
from ..state_tree.nodes import BOT, GENERATED, TEXT, USER
from .chat_template import chat_format_for, chat_segments
from .errors import bad_request, not_found
from .schemas import GenRequest
from .states import ApiTree, StateRegistry

MIN_TOP_ALTERNATIVES = 5  # what the session tree keeps per generated token (the state inspector's view)


@dataclass
class Prepared:
    request: GenRequest
    api_tree: ApiTree
    engine: object
    parent: str  # the node the new text goes under
    prompt_ids: list[int]  # the new tokens (empty: continue `parent` as it is)
    prompt_text: str
    prompt_role: str
    reply_role: str
    settings: list[SamplingSettings]  # one per choice
    top_alternatives: int
    state: list[torch.Tensor]  # 5 x (1, C, L) at `parent`
    logits: torch.Tensor | None  # (V,) at `parent` (None at the root)
    context: list[int]  # the path's tokens up to `parent`
    model_name: str


class ApiService:
    def __init__(self, playground, options):
        self.playground, self.options = playground, options
        self.states = StateRegistry(playground, options)

    def default_name(self) -> str | None:
        """The served model's public name: `demo`, a preset or Hub id as given, a local folder by its name
        (clients never see a server path)."""
        source = self.playground.default_source
        if source is None or source in self.playground.manager.presets or not Path(source).exists():
            return source
        return DEMO_NAME if Path(source).resolve() == Path(resolve_demo(DEMO_NAME)).resolve() else Path(source).name

    def model_names(self) -> list[str]:
        """The served model, then what the Models tab offers: the presets and the bundled demos."""
        names = [self.default_name()] + self.playground.model_choices()
        return list(dict.fromkeys(n for n in names if n))

    def acquire(self, name: str):
        """The named model, borrowed; 404 for a name this server does not serve (the Models tab's rules)."""
        if name == self.default_name():
            return self.playground.acquire_default()
        if name not in self.model_names() and not self.playground.options.allow_any_model:
            raise self.unknown_model(name)
        try:
            return self.playground.acquire(name)
        except InputError as err:  # not downloaded and the Hub out of reach, or not a model this server offers
            raise bad_request(str(err), "model") from None

    def unknown_model(self, name: str):
        return not_found(f"The model {name!r:.80} does not exist on this server: use one of "
                         f"{', '.join(self.model_names())} (GET /v1/models)", "model", "model_not_found")

    def prepare(self, request: GenRequest, key: str) -> Prepared:
        self.states.sweep()
        self.check_limits(request)
        loaded = self.acquire(request.model)
        if request.state_id is not None:
            self.playground.manager.release(loaded)
            api_tree = self.states.find(key, request.state_id, loaded)
        else:
            api_tree = self.states.tree_for(key, loaded, request.model)
        with api_tree.lock:
            tree = api_tree.tree
            parent = request.state_id or tree.root
            ids, text = self.prompt_tokens(request, tree, parent)
            if not ids and parent == tree.root:
                raise bad_request("the prompt is empty", "messages" if request.chat else "prompt")
            state, logits = tree.state_at(parent)  # copies
            context = tree.path_tokens(parent)
            self.states.touch(api_tree, *[n.id for n in tree.path(parent)[1:]])
        settings = self.choice_settings(request, loaded.tokenizer)
        want = request.top_logprobs or 0
        return Prepared(request, api_tree, self.playground.engine_for(api_tree.loaded), parent, ids, text,
                        USER if request.chat else TEXT, BOT if request.chat else GENERATED, settings,
                        max(want, MIN_TOP_ALTERNATIVES), state, logits, context, request.model)

    def check_limits(self, request: GenRequest) -> None:
        options = self.playground.options
        param = "messages" if request.chat else "prompt"
        chars = sum(len(m["content"]) for m in request.messages) if request.chat else len(request.prompt)
        if chars > options.max_prompt_chars:
            what = "the messages have" if request.chat else "the prompt has"
            raise bad_request(f"{what} {chars:,} characters; this server takes at most "
                              f"{options.max_prompt_chars:,}", param, "context_length_exceeded")
        if request.max_tokens is not None and request.max_tokens > options.max_new_tokens:
            raise bad_request(f"max_tokens is {request.max_tokens}; this server generates at most "
                              f"{options.max_new_tokens} tokens per request", "max_tokens")

    def prompt_tokens(self, request: GenRequest, tree, parent: str) -> tuple[list[int], str]:
        tokenizer = tree.require_tokenizer()
        if request.chat:
            tail = tokenizer.decode(tree.path_tokens(parent)[-16:])
            segments = chat_segments(request.messages, chat_format_for(tree.model), tail)
            return [t for s in segments for t in tokenizer.encode(s)], "".join(segments)
        if isinstance(request.prompt, list):
            try:
                check_token_range(request.prompt, tree.model.config.vocab_size, "prompt")
            except InputError as err:
                raise bad_request(str(err), "prompt") from None
            return tree.check_tokens(request.prompt), tree.decode(request.prompt)
        return (tokenizer.encode(request.prompt) if request.prompt else []), request.prompt

    def choice_settings(self, request: GenRequest, tokenizer) -> list[SamplingSettings]:
        limit = request.max_tokens or self.playground.options.max_new_tokens
        base = SamplingSettings(**request.sampling, max_new_tokens=limit, stop=request.stop)
        if request.chat:
            base = reply_settings(base, tokenizer)
        seeds = [None if request.seed is None else (request.seed + i) % 2 ** 64 for i in range(request.n)]
        return [base.replace(seed=seed) for seed in seeds]

    def close(self) -> None:
        self.states.close()
