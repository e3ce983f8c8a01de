// What the layer steps (rwkv4_step.cpp, rwkv7_step.cpp) share: argument checks, the int8 projection, the layer
// norm, a float32 dot product and the low-rank branches' float32 product (and, from ../wkv_loops/cpu_math.h, e^x and
// RWKV-4's WKV for one token).
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../wkv_loops/cpu_math.h"
#include "int8_bf16_mm.h"

namespace layer_step {

using at::Tensor;
using cpu_math::exp16;
using cpu_math::kSerialWork;
using cpu_math::wkv4_token;
using cpu_math::Wkv4Lanes;

inline const float* vec(const Tensor& t, int64_t n, const char* what) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == n && t.device().is_cpu(),
              "layer step: ", what, " must be a contiguous float32 CPU tensor of ", n, " values");
  return t.data_ptr<float>();
}

struct Int8Weight {
  const int8_t* packed;
  const float* scales;
  int64_t blocks, K, N;
};

inline Int8Weight int8_weight(const Tensor& packed, const Tensor& scales, int64_t K, int64_t N, const char* what) {
  TORCH_CHECK(packed.scalar_type() == at::kChar && packed.is_contiguous() && packed.dim() == 4 &&
                  packed.size(0) == (N + int8_cpu::kBlock - 1) / int8_cpu::kBlock && packed.size(1) * 2 == K,
              "layer step: ", what, " must be packed int8 blocks for ", N, " x ", K);
  return {packed.data_ptr<int8_t>(), vec(scales, N, what), packed.size(0), K, N};
}

// out (M, N) = x (M, K) @ W.T through the int8 kernel; `bf16` is scratch for the rows in bfloat16.
inline void project(const Int8Weight& w, const float* x, int64_t M, float* out, std::vector<uint16_t>& bf16) {
  bf16.resize(M * w.K);
  int8_cpu::float_to_bf16(x, bf16.data(), M * w.K);
  int8_cpu::int8_bf16_rows(bf16.data(), M, w.K, w.packed, w.blocks, w.scales, w.N, out);
}

inline void layer_norm(const float* x, float* y, int64_t C, const float* weight, const float* bias, double eps) {
  double sum = 0, squares = 0;
  for (int64_t c = 0; c < C; ++c) sum += x[c];
  const double mean = sum / C;
  for (int64_t c = 0; c < C; ++c) squares += (x[c] - mean) * (x[c] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(squares / C + eps));
  for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - static_cast<float>(mean)) * inv * weight[c] + bias[c];
}

inline float dot(const float* a, const float* b, int64_t n) {  // float32 sums in 16 lanes; any n
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc);
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - j)) - 1);
  acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + j), _mm512_maskz_loadu_ps(tail, b + j), acc);
  return _mm512_reduce_add_ps(acc);
}

// A low-rank branch's float32 product: x (M, K) @ weight (N, K).T (+ bias (N,)) -> (M, N), a dot product per output,
// so each row's result is the same alone or in any batch (at::linear's GEMM sums in an order that depends on M).
// At 1 row it reads each weight row once at memory speed (2-3x at::linear's ~25 us on 2 cores).
inline Tensor linear_f32(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == K, "layer step: a low-rank weight is (N, ", K, ")");
  const float *in = x.data_ptr<float>(), *w = vec(weight, N * K, "a low-rank weight");
  const float* b = bias.defined() ? vec(bias, N, "a low-rank bias") : nullptr;
  Tensor out = at::empty({M, N}, x.options());
  float* y = out.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, kSerialWork / std::max<int64_t>(1, M * K));  // small: one thread
  at::parallel_for(0, N, grain, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n)
      for (int64_t m = 0; m < M; ++m) y[m * N + n] = dot(in + m * K, w + n * K, K) + (b ? b[n] : 0.f);
  });
  return out;
}

// A (B, C) slice of a state tensor, any strides (RWKV-4's state is (B, C, L): a layer's slice is strided).
struct Rows {
  float* data;
  int64_t row, channel;

  Rows(const Tensor& t, int64_t B, int64_t C, const char* what) {
    TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == C && t.scalar_type() == at::kFloat,
                "layer step: ", what, " must be (", B, ", ", C, ") float32");
    data = t.data_ptr<float>();
    row = t.stride(0);
    channel = t.stride(1);
  }
  float& operator()(int64_t b, int64_t c) const { return data[b * row + c * channel]; }
};

}  // namespace layer_step
