"""The CPU default dtype (presets' `cpu: auto`): int8 where the CPU has bfloat16 dot products, else float32."""
import pytest
import torch

from kernels import int8_cpu

from rwkv_app.services.manager import ModelManager, auto_dtype
from rwkv_app.services.model_presets import load_model_presets
from rwkv_app.models.cpu_dtype import cpu_bf16_flags, cpu_default_dtype

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
OLD_LAPTOP = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_bf16_flags_are_read_from_cpuinfo():
    assert cpu_bf16_flags(SAPPHIRE_RAPIDS) == ["avx512_bf16", "amx_bf16"]
    assert cpu_bf16_flags(OLD_LAPTOP) == []


def test_default_is_int8_with_bf16_instructions_else_float32():
    assert cpu_default_dtype(SAPPHIRE_RAPIDS)["dtype"] == "int8"
    fallback = cpu_default_dtype(OLD_LAPTOP)
    assert fallback["dtype"] == "float32" and "float32" in fallback["reason"]


def test_auto_presets_resolve_per_device_and_the_manager_reports_it():
    preset = load_model_presets()["rwkv-4-169m-pile"]
    assert preset.dtype_for("cpu") == "auto"
    assert auto_dtype(torch.device("cpu"), preset) == cpu_default_dtype()["dtype"]
    assert auto_dtype(torch.device("cuda"), preset) == "float16"
    info = ModelManager().cpu_default()
    assert {k: info[k] for k in ("dtype", "reason")} == cpu_default_dtype() and info["reason"]
    assert info["int8_kernel_off"] == int8_cpu.unsupported_reason()


def test_the_models_table_gives_each_model_the_dtype_and_memory_it_would_load_with(tmp_path, monkeypatch):
    """`cpu: auto` presets show the dtype this machine resolves them to, at that dtype's bytes per parameter (int8:
    1 + the 2-byte bfloat16 copy prefill builds); a loaded model shows what it holds; the note names the default."""
    from rwkv_app.services import manager
    from rwkv_app.services.service import Playground, PlaygroundOptions
    from .app_helpers import tiny_playground, write_tiny_model

    auto = [name for name, preset in load_model_presets().items() if preset.dtype_for("cpu") == "auto"]
    model = write_tiny_model(tmp_path / "model")
    operators = tiny_playground(model)  # --dtype float32: every model loads in it
    assert {row["dtype"] for row in operators.model_table()} == {"float32"}
    operators.close()
    playground = Playground(PlaygroundOptions(device="cpu"), manager.ModelManager(local_files_only=True))
    playground.start(str(model))
    try:
        for default, per_param in (("int8", 3), ("float32", 4)):
            monkeypatch.setattr(manager, "cpu_default_dtype", lambda d=default: {"dtype": d, "reason": "measured"})
            rows = {row["name"]: row for row in playground.model_table()}
            assert "auto" not in {row["dtype"] for row in rows.values()}
            for name in auto:
                assert rows[name]["dtype"] == default
                assert rows[name]["memory_gb"] == pytest.approx(rows[name]["params"] * per_param / 2 ** 30)
            assert f"CPU default dtype (presets marked `cpu: auto`): {default}, because measured." in \
                playground.cpu_note()
        session = playground.new_session()
        loaded = [row for row in playground.model_table() if row["loaded"]]
        assert len(loaded) == 1 and loaded[0]["memory_gb"] > 0 and loaded[0]["sessions"] == 1
        session.close()
    finally:
        playground.close()
