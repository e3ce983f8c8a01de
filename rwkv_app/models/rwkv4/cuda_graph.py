"""CUDA-graph decode: the whole one-token step captured once per (model, batch size, dtype), then replayed.

Small models decode faster than the CPU can launch their ~12 kernels per block; a graph replays all
of them with one launch. The graph reads static buffers (token ids and the five state tensors) and
writes static outputs; each call copies the caller's ids and state in and clones logits and state
out, so the caller's tensors are never aliased or written. Where capture fails (or graphs are not
supported), the step is marked ungraphable once, with one warning, and the eager fused step runs.
"""
from __future__ import annotations

import threading
import warnings

import torch

from kernels.reference import EMPTY_MAX

from .fused_decode import DecodePlan, checked_ids, decode_step, eager_step, plan_for
from .state import check_state

MAX_GRAPHS_PER_MODEL = 16  # batch sizes kept; the oldest capture is dropped beyond this
WARMUP_STEPS = 2  # before capture: compiles the Triton kernels and sets up cuBLAS outside the graph


def static_state(plan: DecodePlan, batch: int) -> list[torch.Tensor]:
    """Five (B, C, L) buffers shaped like the model's state: shifts in the model dtype, WKV float32."""
    hidden = plan.embeddings.size(1)
    channels = plan.layers[0].time_decay.size(0)
    layers = len(plan.layers)
    shifts = [torch.zeros(batch, hidden, layers, dtype=plan.dtype, device=plan.device) for _ in range(2)]
    wkv = [torch.zeros(batch, channels, layers, dtype=torch.float32, device=plan.device) for _ in range(3)]
    wkv[2].fill_(EMPTY_MAX)
    return shifts + wkv


class GraphedStep:
    """decode_step for one batch size, captured in a CUDA graph. Thread-safe: one replay at a time."""

    def __init__(self, plan: DecodePlan, batch: int):
        self.lock = threading.Lock()
        with torch.inference_mode(False), torch.no_grad(), torch.cuda.device(plan.device):  # plain, writable tensors
            self.input_ids = torch.zeros(batch, 1, dtype=torch.long, device=plan.device)  # (B, 1)
            self.state_in = static_state(plan, batch)  # 5 x (B, C, L)
            self.state_out = [torch.empty_like(s) for s in self.state_in]
            side = torch.cuda.Stream(plan.device)
            side.wait_stream(torch.cuda.current_stream(plan.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    decode_step(plan, self.input_ids, self.state_in, self.state_out)
            torch.cuda.current_stream(plan.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):  # other threads may use CUDA
                self.logits = decode_step(plan, self.input_ids, self.state_in, self.state_out)  # (B, 1, V)

    def __call__(self, input_ids: torch.Tensor, state: list[torch.Tensor]):
        """(logits (B, 1, V), next state): fresh tensors, the caller's untouched."""
        with self.lock, torch.inference_mode(False), torch.no_grad(), torch.cuda.device(self.input_ids.device):
            self.input_ids.copy_(input_ids)
            torch._foreach_copy_(self.state_in, list(state))  # converts dtypes where the caller's differ
            self.graph.replay()
            logits = self.logits.clone()
            state_out = [torch.empty_like(s) for s in self.state_out]
            torch._foreach_copy_(state_out, self.state_out)
        return logits, state_out


_CAPTURE_LOCK = threading.Lock()  # one capture at a time, and each (plan, batch) captured once


def graphed_step(plan: DecodePlan, batch: int) -> GraphedStep | None:
    """The plan's graph for this batch size, captured on first use; None where capture failed."""
    if batch in plan.graphs:
        return plan.graphs[batch]
    with _CAPTURE_LOCK:
        if batch in plan.graphs:
            return plan.graphs[batch]
        if len(plan.graphs) >= MAX_GRAPHS_PER_MODEL:
            plan.graphs.pop(next(iter(plan.graphs)))
        try:
            plan.graphs[batch] = GraphedStep(plan, batch)
        except Exception as err:  # capture unsupported or failed: the eager fused step, from now on
            warnings.warn(f"CUDA graph capture failed for batch {batch} ({type(err).__name__}: {err}); "
                          "decoding with the eager fused step", RuntimeWarning, stacklevel=3)
            plan.graphs[batch] = None
        return plan.graphs[batch]


def causal_lm_step(model, input_ids: torch.Tensor, state: list[torch.Tensor]):
    """forward() for one token on CUDA: (logits (B, 1, V), new state), replayed from a graph when
    model.cuda_decode is "graph" and capture works, else the eager fused step. Same checks as the per-op
    path; the caller's state is neither kept nor written."""
    input_ids = checked_ids(model, input_ids)  # (B, 1)
    check_state(state, model.config, input_ids.size(0), input_ids.device)
    plan = plan_for(model)
    if model.cuda_decode == "graph":
        step = graphed_step(plan, input_ids.size(0))
        if step is not None:
            return step(input_ids, state)
    return eager_step(plan, input_ids, state)
