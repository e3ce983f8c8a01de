"""kernels/int8_cpu: the C++ int8 x bfloat16 kernel against the float32 oracle, its packing, and when it runs."""
import pytest
import torch

from kernels import cpp_build, int8_cpu
from rwkv_app.models.quantize import int8_linear_reference, quantize_per_channel

needs_kernel = pytest.mark.skipif(int8_cpu.load() is None, reason="kernels/int8_cpu does not run here")


def bf16_rows(rows: int, k: int) -> torch.Tensor:
    return torch.randn(rows, k).to(torch.bfloat16)  # (M, K)


@pytest.mark.parametrize("n, k", [(16, 32), (99, 80), (7, 2), (300, 768), (50277 // 64, 130)])
def test_packing_round_trips(n, k):
    quantized, _ = quantize_per_channel(torch.randn(n, k))
    packed = int8_cpu.pack_weight(quantized)
    assert packed.shape == (-(-n // 16), k // 2, 16, 2) and packed.dtype == torch.int8
    assert torch.equal(int8_cpu.unpack_weight(packed, n), quantized)
    assert int(packed.abs().sum()) == int(quantized.abs().sum())  # padding is zeros


def test_packing_refuses_what_the_kernel_cannot_take():
    for bad in (torch.zeros(4, 5, dtype=torch.int8), torch.zeros(4, 6), torch.zeros(2, 4, 6, dtype=torch.int8)):
        assert not int8_cpu.takes(bad)
        with pytest.raises(ValueError, match="even K"):
            int8_cpu.pack_weight(bad)


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 13, 16, 17, 40])  # every register tile, and more than one pass
@pytest.mark.parametrize("n, k", [(48, 64), (99, 80), (5, 6), (257, 768)])  # whole and padded blocks
def test_kernel_matches_the_float32_reference(rows, n, k):
    torch.manual_seed(rows * n + k)
    quantized, scales = quantize_per_channel(torch.randn(n, k) * torch.logspace(-2, 1, n)[:, None])
    x = bf16_rows(rows, k)
    packed = int8_cpu.pack_weight(quantized)
    got = int8_cpu.int8_bf16_mm(x, packed, scales)  # (M, N)
    expected = int8_linear_reference(x.float(), quantized, scales)  # the same bfloat16 inputs, float32 sums
    assert got.dtype == torch.float32 and got.shape == (rows, n)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert torch.equal(int8_cpu.int8_bf16_mm(x.float(), packed, scales), got)  # float32 rows: rounded inside


@needs_kernel
def test_each_row_is_independent_of_its_batch():
    quantized, scales = quantize_per_channel(torch.randn(64, 96))
    packed = int8_cpu.pack_weight(quantized)
    x = bf16_rows(16, 96)
    together = int8_cpu.int8_bf16_mm(x, packed, scales)  # (16, N)
    alone = torch.cat([int8_cpu.int8_bf16_mm(x[i:i + 1], packed, scales) for i in range(16)])  # (16, N)
    assert torch.equal(together, alone)


@needs_kernel
def test_the_kernel_checks_its_inputs():
    quantized, scales = quantize_per_channel(torch.randn(32, 64))
    packed = int8_cpu.pack_weight(quantized)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        int8_cpu.int8_bf16_mm(torch.randn(2, 64, dtype=torch.float64), packed, scales)
    with pytest.raises(RuntimeError, match="scales"):
        int8_cpu.int8_bf16_mm(bf16_rows(2, 64), packed, scales.double())
    with pytest.raises(RuntimeError, match="one per output channel"):
        int8_cpu.int8_bf16_mm(bf16_rows(2, 64), packed, scales[:3])
    with pytest.raises(RuntimeError, match="packed"):
        int8_cpu.int8_bf16_mm(bf16_rows(2, 32), packed, scales)
    with pytest.raises(RuntimeError, match="CPU tensors only"):
        int8_cpu.int8_bf16_mm(bf16_rows(2, 64).to("meta"), packed, scales)


def test_cpu_flags_are_whole_words_of_the_flags_line():
    from kernels.cpu_flags import cpu_flags

    flags = cpu_flags("processor\t: 0\nmodel name\t: avx512_bf16 in a name\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert flags == {"fpu", "avx512f", "avx512_bf16"} and "avx512_bf1" not in flags
    assert cpu_flags("") == frozenset()


def test_the_off_switch_and_the_cpu_decide_before_any_build(monkeypatch):
    monkeypatch.setenv(int8_cpu.OFF_SWITCH, "0")
    assert int8_cpu.unsupported_reason() == f"{int8_cpu.OFF_SWITCH}=0"
    monkeypatch.delenv(int8_cpu.OFF_SWITCH)
    monkeypatch.setattr(cpp_build, "cpu_flags", lambda: frozenset({"avx512f"}))
    assert "lacks avx512_bf16" in int8_cpu.unsupported_reason()


@needs_kernel
def test_the_benchmark_times_each_contender_against_the_kernel(monkeypatch, capsys):
    from kernels.int8_cpu import bench

    monkeypatch.setattr(bench, "SHAPES", ((64, 32, 2),))
    assert bench.main(["--rows", "1", "3", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["2 x (64 x 32),  1 rows", "2 x (64 x 32),  3 rows"]
    assert all("; int8pack " in line and "; bfloat16 GEMM " in line and line.endswith("x)") for line in lines[1:])


def test_a_failed_build_leaves_torch_kernels_with_one_warning(monkeypatch, caplog):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: g++: command not found")

    monkeypatch.setattr(cpp_build, "cpu_flags", lambda: frozenset({int8_cpu.CPU_FLAG}))
    monkeypatch.delenv(int8_cpu.OFF_SWITCH, raising=False)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    with caplog.at_level("INFO", logger=cpp_build.__name__):
        assert cpp_build.Extension.load.__wrapped__(int8_cpu.EXTENSION) is None  # uncached: a fresh attempt
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "g++: command not found" in caplog.records[-1].getMessage()
    assert "int8 models use torch's kernels" in caplog.records[-1].getMessage()
