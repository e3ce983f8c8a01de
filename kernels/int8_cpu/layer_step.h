// What the layer steps (rwkv4_step.cpp, rwkv7_step.cpp) share: argument checks, the int8 projection, the layer
// norm, a float32 dot product and the low-rank branches' float32 product.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "int8_bf16_mm.h"

namespace layer_step {

using at::Tensor;

// Multiply-adds below which a loop runs on one thread: a parallel region costs a few microseconds, and on a busy
// machine a wait for a descheduled thread; 64 K is ~10 us of one core's work.
constexpr int64_t kSerialWork = 1 << 16;

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

// e^x for 16 floats: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor polynomial to r^7 (error below float32's
// last bit), times 2^n by VSCALEFPS. Inputs are clamped to [-110, 88.7]: below, e^x is 0 in float32; above, inf.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-110.f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);  // ln2 in two parts: exact n * hi
  const __m512 t = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040);
  for (const float c : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f})
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// kernels/reference.py's RWKV-4 WKV for one token on 16 channels: returns the output and moves the lanes' state on.
// w = -exp(time_decay), u = time_first. Shared by the layer step and the sequence kernel (wkv4_sequence.cpp).
struct Wkv4Lanes {
  __m512 num, den, max;
};

inline __m512 wkv4_token(Wkv4Lanes& s, __m512 k, __m512 v, __m512 u, __m512 w) {
  __m512 q = _mm512_max_ps(s.max, _mm512_add_ps(k, u));
  __m512 e1 = exp16(_mm512_sub_ps(s.max, q)), e2 = exp16(_mm512_sub_ps(_mm512_add_ps(k, u), q));
  const __m512 out = _mm512_div_ps(_mm512_fmadd_ps(e1, s.num, _mm512_mul_ps(e2, v)), _mm512_fmadd_ps(e1, s.den, e2));
  q = _mm512_max_ps(_mm512_add_ps(s.max, w), k);
  e1 = exp16(_mm512_sub_ps(_mm512_add_ps(s.max, w), q));
  e2 = exp16(_mm512_sub_ps(k, q));
  s = {_mm512_fmadd_ps(e1, s.num, _mm512_mul_ps(e2, v)), _mm512_fmadd_ps(e1, s.den, e2), q};
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
