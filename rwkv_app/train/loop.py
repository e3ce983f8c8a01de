"""The training loop: AdamW with linear warm-up and cosine decay, gradient clipping, periodic held-out evaluation,
resumable checkpoints, and a Hub-style export (config.json, model.safetensors, tokenizer.json, training.json).

Training runs the model's own forward with `labels` (the shifted cross-entropy) on the fast chunked CPU WKV scan
(`wkv_impl="auto"`), whose torch ops autograd differentiates; never the per-token reference loop.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..weights.checkpoints import save_state_dict
from ..weights.pretrained import convert_tensors, resolve_dtype
from ..tokenizers.tokenizer import TOKENIZER_FILE, RwkvTokenizer
from .checkpoint import ResumeState, load_checkpoint, save_checkpoint
from .data import TokenData, prepare, random_windows, split_documents, split_heldout, train_tokenizer
from .evaluate import Evaluation, evaluate
from .families import MODEL_CLASSES, check_family, decays
from .families import new_model as new_family_model

LOG_FILE = "train_log.jsonl"
RESULT_FILE = "training.json"
RUNTIME_FIELDS = ("threads", "stop_after", "progress")  # may change on resume; everything else must not


@dataclass
class TrainConfig:
    text: str  # UTF-8 corpus; documents separated by <|endoftext|>
    out: str
    family: str = "rwkv4"  # rwkv4 | rwkv7 (rwkv_app/train/families.py)
    heldout: str | None = None  # a separate held-out file; else the last `heldout_fraction` of `text`
    heldout_fraction: float = 0.05
    vocab_size: int = 4096
    num_layers: int = 4
    hidden_size: int = 256
    tie_embeddings: bool = False  # the head shares the embedding matrix (a smaller file)
    context: int = 256  # tokens per training window
    batch_size: int = 16
    steps: int = 2000
    warmup: int = 100
    lr: float = 2e-3
    min_lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_tokens: int = 16384  # held-out tokens scored at each periodic evaluation (the final one scores all)
    checkpoint_every: int = 200
    seed: int = 0
    save_dtype: str = "float16"
    threads: int | None = None  # torch CPU threads; None: torch's default (all cores)
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps in this run
    progress: bool = True

    def __post_init__(self) -> None:
        check_family(self.family)

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_FIELDS}


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr` over `warmup` steps, then cosine decay to `min_lr` at `steps`."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def build_optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on the matrices of the linear layers only (the family's rule, rwkv_app/train/families.py)."""
    decay, rest = [], []
    for name, param in model.named_parameters():
        (decay if decays(config.family, name, param) else rest).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=1e-8)


def new_model(config: TrainConfig, vocab_size: int):
    """A fresh model of config.family whose residual branches start at zero (each block starts as the identity)."""
    torch.manual_seed(config.seed)
    return new_family_model(config.family, vocab_size, config.hidden_size, config.num_layers, config.context,
                            config.tie_embeddings)


def load_data(config: TrainConfig, tokenizer: RwkvTokenizer | None) -> tuple[RwkvTokenizer, TokenData]:
    """Split the corpus, train the tokenizer on the training part only (unless given), and encode both parts."""
    documents = split_documents(Path(config.text).read_text(encoding="utf-8"))
    if config.heldout:
        train_docs, heldout_docs = documents, split_documents(Path(config.heldout).read_text(encoding="utf-8"))
    else:
        train_docs, heldout_docs = split_heldout(documents, config.heldout_fraction)
    tokenizer = tokenizer or train_tokenizer(train_docs, config.vocab_size)
    return tokenizer, prepare(tokenizer, train_docs, heldout_docs)


class Trainer:
    """One training run: fresh (`Trainer(config)`) or continued from its checkpoint (`Trainer.resume(...)`)."""

    def __init__(self, config: TrainConfig, resume: ResumeState | None = None,
                 model=None):
        self.config, self.out = config, Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        saved = self.out / TOKENIZER_FILE
        tokenizer = RwkvTokenizer.from_file(saved) if resume is not None else None
        self.tokenizer, self.data = load_data(config, tokenizer)
        if resume is None:
            self.tokenizer.backend.save(str(saved))
        self.model = model if model is not None else new_model(config, self.tokenizer.vocab_size)
        self.optimizer = build_optimizer(self.model, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.history, self.losses, self.seconds = 0, [], [], 0.0
        if resume is not None:
            self._restore(resume)

    @classmethod
    def resume(cls, out: str | Path, **runtime) -> "Trainer":
        """Continue the run saved under `out`: same settings, schedule position, optimizer and RNG states."""
        model, state = load_checkpoint(Path(out))
        settings = dict(state.settings, out=str(out), betas=tuple(state.settings["betas"]))
        config = TrainConfig(**settings, **{k: v for k, v in runtime.items() if k in RUNTIME_FIELDS})
        return cls(config, resume=state, model=model)

    def _restore(self, state: ResumeState) -> None:
        self.optimizer.load_state_dict(state.optimizer)
        self.generator.set_state(state.data_rng)
        torch.set_rng_state(state.torch_rng)
        self.step, self.history, self.seconds = state.step, list(state.history), state.seconds

    # ---- one step, evaluation, checkpoints ---------------------------------------------------------------
    def train_step(self) -> float:
        config = self.config
        lr = learning_rate(config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        windows = random_windows(self.data.train, config.batch_size, config.context + 1, self.generator)  # (B, T+1)
        loss = self.model(input_ids=windows, labels=windows, use_cache=False).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def evaluate(self, tokens: int | None = None) -> Evaluation:
        ids = self.data.heldout if tokens is None else self.data.heldout[:tokens]
        return evaluate(self.model, self.tokenizer, ids)

    def save_checkpoint(self) -> Path:
        state = ResumeState(step=self.step, settings=self.config.to_json(), optimizer=self.optimizer.state_dict(),
                            data_rng=self.generator.get_state(), torch_rng=torch.get_rng_state(),
                            history=self.history, seconds=self.seconds)
        return save_checkpoint(self.out, self.model, state)

    def record(self, train_loss: float, evaluation: Evaluation, elapsed: float) -> dict:
        entry = {"step": self.step, "train_loss": round(train_loss, 5), "heldout_loss": round(evaluation.loss, 5),
                 "heldout_bits_per_char": round(evaluation.bits_per_char, 5), "elapsed_s": round(elapsed, 1)}
        self.history.append(entry)
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        return entry

    # ---- export --------------------------------------------------------------------------------------------
    def export(self, seconds: float) -> dict:
        """Write the Hub-style model folder in `save_dtype`, then score the whole held-out split with the weights
        as saved (loaded back in float32), and record the figures in training.json."""
        dtype = resolve_dtype(self.config.save_dtype)
        weights = convert_tensors(self.model.state_dict(), dtype, torch.device("cpu"))
        if self.model.config.tie_word_embeddings:
            weights.pop(self.model.head_key)
        save_state_dict(weights, self.out)
        self.model.config.save_pretrained(self.out)
        self.tokenizer.backend.save(str(self.out / TOKENIZER_FILE))
        saved = MODEL_CLASSES[self.config.family].from_pretrained(self.out, dtype="float32")
        final = evaluate(saved, self.tokenizer, self.data.heldout)
        result = {"settings": self.config.to_json(), "steps": self.step, "train_seconds": round(seconds, 1),
                  "parameters": sum(p.numel() for p in saved.parameters()), "train_tokens": self.data.train.numel(),
                  "heldout": final.to_dict(), "history": self.history}
        (self.out / RESULT_FILE).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return result


def fit(trainer: Trainer) -> dict | None:
    """Train to `steps` (or `stop_after` more steps), evaluating and checkpointing on the way; export at the end.

    Returns the training.json record when the run finished, None when it stopped early (resume it later).
    """
    config = trainer.config
    last = config.steps if config.stop_after is None else min(config.steps, trainer.step + config.stop_after)
    started = time.perf_counter() - trainer.seconds
    meter = ThroughputMeter(config.batch_size * config.context, trainer.step)
    with tqdm(total=config.steps, initial=trainer.step, disable=not config.progress, unit="step",
              mininterval=5.0, dynamic_ncols=True) as bar:
        while trainer.step < last:
            loss = trainer.train_step()
            bar.update(1)
            rate = meter.update(trainer.step)
            if rate is not None:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}",
                                lr=f"{learning_rate(config, trainer.step):.1e}", refresh=False)
            if trainer.step % config.eval_every == 0 or trainer.step == config.steps:
                recent = trainer.losses[-config.eval_every:]
                entry = trainer.record(sum(recent) / len(recent), trainer.evaluate(config.eval_tokens),
                                       time.perf_counter() - started)
                bar.write(f"step {entry['step']}: train loss {entry['train_loss']:.4f}, held-out loss "
                          f"{entry['heldout_loss']:.4f} ({entry['heldout_bits_per_char']:.3f} bits/char)")
            if trainer.step % config.checkpoint_every == 0 or trainer.step == last:
                trainer.seconds = time.perf_counter() - started
                trainer.save_checkpoint()
    if trainer.step < config.steps:
        return None
    return trainer.export(trainer.seconds)


class ThroughputMeter:
    """Training tokens per second over the last few seconds, for the progress bar."""

    def __init__(self, tokens_per_step: int, step: int, interval: float = 2.0):
        self.tokens_per_step, self.interval = tokens_per_step, interval
        self.since, self.since_step = time.perf_counter(), step

    def update(self, step: int) -> float | None:
        now = time.perf_counter()
        if now - self.since < self.interval:
            return None
        rate = (step - self.since_step) * self.tokens_per_step / (now - self.since)
        self.since, self.since_step = now, step
        return rate
