"""The CPU default dtype (presets' `cpu: auto`): int8 where the CPU has bfloat16 dot products, else float32."""
import torch

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
    assert info == cpu_default_dtype() and info["reason"]
