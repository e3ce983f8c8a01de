// What kernels/wkv_loops's loops share with kernels/int8_cpu's layer steps: the serial-work threshold, e^x for 16
// floats, and RWKV-4's WKV for one token. AVX512F only (kernels/wkv_loops is built without BF16 instructions).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace cpu_math {

// Multiply-adds below which a loop runs on one thread: a parallel region costs a few microseconds, and on a busy
// machine a wait for a descheduled thread; 64 K is ~10 us of one core's work.
constexpr int64_t kSerialWork = 1 << 16;

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
// w = -exp(time_decay), u = time_first. Shared by the layer step (rwkv4_step.cpp) and the sequence loop (wkv4_sequence.cpp).
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

}  // namespace cpu_math
