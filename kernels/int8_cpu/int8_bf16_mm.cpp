// int8 weights x bfloat16 rows -> float32, for CPU decode (x86 with AVX512-BF16); built at first use by
// kernels/int8_cpu/__init__.py. The weight is packed in blocks of 16 output channels: each 32-byte group holds,
// for those 16 channels, two consecutive input positions. A group is widened to bfloat16 once (exact: |q| <= 127)
// and multiplied into every row with VDPBF16PS (float32 sums), so each weight byte is read once for the batch.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "int8_bf16_mm.h"
#include "rwkv4_step.h"
#include "rwkv7_step.h"

using int8_cpu::kBlock;
using int8_cpu::kMaxRows;

namespace {

// One block of 16 output channels for ROWS rows: weight (K/2, 16, 2) int8, rows (ROWS, K) bfloat16 bits.
template <int ROWS>
void block_rows(const int8_t* weight, const uint16_t* rows, int64_t K, const float* scales, float* out,
                int64_t out_stride, __mmask16 valid) {
  __m512 sums[ROWS];
  for (int r = 0; r < ROWS; ++r) sums[r] = _mm512_setzero_ps();
  for (int64_t pair = 0; pair < K / 2; ++pair) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weight + pair * 32));
    const __m512 low = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(bytes)));
    const __m512 high = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(bytes, 1)));
    const __m512bh widened = _mm512_cvtne2ps_pbh(high, low);  // 16 channels x 2 positions
    for (int r = 0; r < ROWS; ++r) {
      const __m512i x_pair = _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(rows + r * K + 2 * pair));
      sums[r] = _mm512_dpbf16_ps(sums[r], reinterpret_cast<const __m512bh&>(x_pair), widened);
    }
  }
  const __m512 scale = _mm512_maskz_loadu_ps(valid, scales);
  for (int r = 0; r < ROWS; ++r) _mm512_mask_storeu_ps(out + r * out_stride, valid, _mm512_mul_ps(sums[r], scale));
}

using BlockFn = void (*)(const int8_t*, const uint16_t*, int64_t, const float*, float*, int64_t, __mmask16);

template <int... R>
constexpr std::array<BlockFn, sizeof...(R)> block_table(std::integer_sequence<int, R...>) {
  return {&block_rows<R + 1>...};
}

}  // namespace

void int8_cpu::int8_bf16_rows(const uint16_t* x, int64_t M, int64_t K, const int8_t* weight, int64_t blocks,
                              const float* scale, int64_t N, float* y) {
  static const auto table = block_table(std::make_integer_sequence<int, kMaxRows>{});
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const int64_t n0 = b * kBlock;
      const auto valid = static_cast<__mmask16>((1u << std::min<int64_t>(kBlock, N - n0)) - 1);
      for (int64_t m0 = 0; m0 < M; m0 += kMaxRows) {  // the block's weights stay in cache across row passes
        const int64_t count = std::min<int64_t>(kMaxRows, M - m0);
        table[count - 1](weight + n0 * K, x + m0 * K, K, scale + n0, y + m0 * N + n0, N, valid);
      }
    }
  });
}

void int8_cpu::float_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<const __m256i&>(packed));
  }
  for (; i < n; ++i) {  // the tail, rounded the same way (finite values; NaN stays NaN)
    uint32_t bits;
    std::memcpy(&bits, src + i, 4);
    dst[i] = std::isnan(src[i]) ? 0x7FC0 : static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
  }
}

// rows (M, K) float32 or bfloat16 (rounded to bfloat16 here), packed (ceil(N/16), K/2, 16, 2) int8, scales (N,)
// float32 -> (M, N) float32.
torch::Tensor int8_bf16_mm(const torch::Tensor& input, const torch::Tensor& packed, const torch::Tensor& scales) {
  TORCH_CHECK(input.device().is_cpu() && packed.device().is_cpu() && scales.device().is_cpu(),
              "the int8 CPU kernel takes CPU tensors only");
  TORCH_CHECK(input.dim() == 2 && (input.scalar_type() == torch::kBFloat16 || input.scalar_type() == torch::kFloat),
              "rows: (M, K) float32 or bfloat16");
  const torch::Tensor rows = input.to(torch::kBFloat16).contiguous();
  TORCH_CHECK(packed.dim() == 4 && packed.scalar_type() == torch::kInt8 && packed.is_contiguous(), "packed: int8 blocks");
  TORCH_CHECK(scales.dim() == 1 && scales.scalar_type() == torch::kFloat && scales.is_contiguous(), "scales: (N,) float32");
  const int64_t M = rows.size(0), K = rows.size(1), blocks = packed.size(0), N = scales.size(0);
  TORCH_CHECK(packed.size(1) * 2 == K && packed.size(2) == kBlock && packed.size(3) == 2, "packed: (N/16, K/2, 16, 2)");
  TORCH_CHECK(N > (blocks - 1) * kBlock && N <= blocks * kBlock, "scales: one per output channel");
  auto out = torch::empty({M, N}, rows.options().dtype(torch::kFloat));
  int8_cpu::int8_bf16_rows(reinterpret_cast<const uint16_t*>(rows.data_ptr()), M, K, packed.data_ptr<int8_t>(),
                           blocks, scales.data_ptr<float>(), N, out.data_ptr<float>());
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_bf16_mm", &int8_bf16_mm, "int8 weights (packed) x rows in bfloat16 -> float32 (M, N)");
  m.def("rwkv4_layer_step", &rwkv4_layer_step, "one RWKV-4 layer, one token per row (see rwkv4_step.cpp)");
  m.def("rwkv7_layer_step", &rwkv7_layer_step, "one RWKV-7 layer, one token per row (see rwkv7_step.cpp)");
}
