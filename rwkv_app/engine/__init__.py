"""The batched decode engine (service layer): every running generation shares one decode forward per step.

    from rwkv_app.engine import Engine
    with Engine(model, tokenizer) as engine:
        for event in engine.submit("Hello", sampling=settings, max_new_tokens=32):
            ...                                   # the TokenEvents / FinishEvent of stream_generate

See core.py for the API, scheduler.py for one step, batch.py for the stacked states, requests.py for the
checks done at submit and the handle.
"""
from .core import Engine, EngineStats
from .requests import CANCELLED, ERROR, EngineBusy, EngineClosed, EngineError, ErrorFinish, Generation

__all__ = ["Engine", "EngineStats", "Generation", "ErrorFinish", "EngineError", "EngineBusy", "EngineClosed",
           "CANCELLED", "ERROR"]
