"""The cpu8 benchmark's table: goals marked, machine/threads/load average in the header, missing parts named."""
from benchmarks.cpu8 import Cpu8Settings
from benchmarks.cpu8_tables import render

RWKV4 = {"default_dtype": "int8",
         "decode": {"int8": 30.0, "int8, per-op path": 20.0, "int8, torch kernels": 15.0, "float32": 10.0, "bfloat16": 12.0, "transformers": 10.0, "rwkv fp32i8": 2.0},
         "prefill": {"default": 500.0, "float32": 200.0, "bfloat16": 400.0, "transformers": 250.0,
                     "default, chunked WKV": 400.0},
         "greedy_match": {"int8": [6, 40, 3], "bfloat16": [6, 33, 40]},
         "engine": {"greedy/1": 20.0, "greedy/8": 110.0, "greedy/16": 150.0, "balanced/1": 18.0,
                    "balanced/8": 80.0, "balanced/16": 150.0},
         "engine_per_op": {"greedy/1": 12.0, "greedy/8": 90.0, "greedy/16": 140.0},
         "engine_torch_int8": {"greedy/1": 16.0, "greedy/8": 100.0, "greedy/16": 120.0},
         "demo_bpc": {"float32": 1.6, "int8": 1.601, "bfloat16": 1.6005}}


def test_table_marks_goals_and_names_the_machine():
    results = {"rwkv4": RWKV4, "rwkv7_error": "RuntimeError: boom", "loadavg": ((5.0, 4.0, 3.0), (6.0, 4.5, 3.2))}
    table = render(results, Cpu8Settings())
    assert "threads** in every row" in table and "before: 5.00, 4.00, 3.00" in table
    assert "| 30.0 | 10.0 | 3.00x ✅ | 2.5x |" in table  # decode int8 vs transformers
    assert "| 500.0 | 250.0 | 2.00x ❌ | 2.5x |" in table  # prefill default vs transformers
    assert "| 110.0 | 20.0 | 5.50x ✅ | 5.0x |" in table and "| 150.0 | 18.0 | 8.33x ✅ | 8.0x |" in table
    assert "not measured: RuntimeError: boom" in table
    kernel = "kernels/int8_cpu vs torch's int8 kernels"
    assert f"decode batch 1, int8: {kernel} (tokens/s) | 30.0 | 15.0 | 2.00x |" in table
    assert f"engine, 16 concurrent, greedy: {kernel} (total tokens/s) | 150.0 | 120.0 | 1.25x |" in table
    step = "C++ layer step vs per-op path"
    assert f"decode batch 1, int8: {step} (tokens/s) | 30.0 | 20.0 | 1.50x |" in table
    assert f"engine, 1 concurrent, greedy: {step} (total tokens/s) | 20.0 | 12.0 | 1.67x |" in table
    assert "prefill T=512, default (int8): C++ WKV vs chunked torch WKV | 500.0 | 400.0 | 1.25x |" in table
    assert "int8 1.6010 (+0.062%)" in table
    assert "int8 6, 40, 3 (median 6; 1 of 3 prompts reach 32); bfloat16 6, 33, 40 (median 33; 2 of 3" in table
