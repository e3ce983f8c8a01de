// The int8 x bfloat16 kernel's raw entry points, shared by the C++ files of this extension
// (int8_bf16_mm.cpp defines them; the layer steps call them through layer_step.h's `project`).
#pragma once
#include <cstdint>

namespace int8_cpu {

constexpr int64_t kBlock = 16;    // output channels per packed block: one register of float32 sums
constexpr int64_t kMaxRows = 16;  // rows per pass: one register of sums each

// out (M, N) float32 = rows (M, K) bfloat16 bits @ (packed (blocks, K/2, 16, 2) int8 * scales (N,)).T
void int8_bf16_rows(const uint16_t* rows, int64_t M, int64_t K, const int8_t* packed, int64_t blocks,
                    const float* scales, int64_t N, float* out);

// float32 -> bfloat16 bits, rounded to nearest even (as torch's .to(torch.bfloat16))
void float_to_bf16(const float* src, uint16_t* dst, int64_t n);

}  // namespace int8_cpu
