// RWKV-4's WKV over T tokens on the CPU, float32: kernels/reference.py's loop, token by token, 16 channels at a time
// (cpu_math.h's wkv4_token, which kernels/int8_cpu's one-token layer step also runs), each block of channels'
// (num, den, max) in registers for the whole sequence. Autograd uses the chunked form in kernels/cpu.py; kernels/cpp.py calls this and
// tests/test_kernels_cpp.py holds it to the reference.
#include "wkv4_sequence.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>

#include "cpu_math.h"

using cpu_math::exp16;
using cpu_math::Wkv4Lanes;

// time_decay, time_first (C,) float32 (w = -exp(time_decay), u = time_first); k, v (B, T, C) contiguous float32;
// state_in and state_out: (num, den, max), each (B, C) contiguous float32 (out may be in). Returns the output
// (B, T, C).
at::Tensor wkv4_sequence(const at::Tensor& time_decay, const at::Tensor& time_first, const at::Tensor& k,
                         const at::Tensor& v, const std::vector<at::Tensor>& state_in,
                         const std::vector<at::Tensor>& state_out) {
  TORCH_CHECK(k.dim() == 3, "wkv4_sequence: key and value are (B, T, C)");
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  for (const at::Tensor* t : {&k, &v})
    TORCH_CHECK(t->sizes() == k.sizes() && t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                "wkv4_sequence: key and value are contiguous float32 CPU tensors of one shape");
  TORCH_CHECK(state_in.size() == 3 && state_out.size() == 3, "wkv4_sequence: states are (num, den, max)");
  std::vector<const float*> in;
  std::vector<float*> out;
  for (int s = 0; s < 3; ++s) {
    for (const at::Tensor* t : {&state_in[s], &state_out[s]})
      TORCH_CHECK(t->dim() == 2 && t->size(0) == B && t->size(1) == C && t->scalar_type() == at::kFloat &&
                      t->is_contiguous() && t->device().is_cpu(),
                  "wkv4_sequence: state tensors are contiguous (B, C) float32 CPU tensors");
    in.push_back(state_in[s].data_ptr<float>());
    out.push_back(state_out[s].data_ptr<float>());
  }
  for (const at::Tensor* t : {&time_decay, &time_first})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == C && t->device().is_cpu(),
                "wkv4_sequence: time_decay and time_first are contiguous float32 CPU tensors of C values");
  const float *decay = time_decay.data_ptr<float>(), *first = time_first.data_ptr<float>();
  at::Tensor output = at::empty_like(k);
  const float *pk = k.data_ptr<float>(), *pv = v.data_ptr<float>();
  float* po = output.data_ptr<float>();
  const int64_t blocks = (C + 15) / 16, grain = std::max<int64_t>(1, cpu_math::kSerialWork / (T * 16 * 8));
  at::parallel_for(0, B * blocks, grain, [&](int64_t first_task, int64_t last_task) {
    for (int64_t task = first_task; task < last_task; ++task) {
      const int64_t b = task / blocks, c0 = (task % blocks) * 16, at_state = b * C + c0;
      const __mmask16 valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, C - c0)) - 1);
      Wkv4Lanes state{_mm512_maskz_loadu_ps(valid, in[0] + at_state), _mm512_maskz_loadu_ps(valid, in[1] + at_state),
                      _mm512_maskz_loadu_ps(valid, in[2] + at_state)};
      const __m512 u = _mm512_maskz_loadu_ps(valid, first + c0);
      const __m512 w = _mm512_sub_ps(_mm512_setzero_ps(), exp16(_mm512_maskz_loadu_ps(valid, decay + c0)));
      for (int64_t t = 0, at = b * T * C + c0; t < T; ++t, at += C) {
        const __m512 kt = _mm512_maskz_loadu_ps(valid, pk + at), vt = _mm512_maskz_loadu_ps(valid, pv + at);
        _mm512_mask_storeu_ps(po + at, valid, cpu_math::wkv4_token(state, kt, vt, u, w));
      }
      _mm512_mask_storeu_ps(out[0] + at_state, valid, state.num);
      _mm512_mask_storeu_ps(out[1] + at_state, valid, state.den);
      _mm512_mask_storeu_ps(out[2] + at_state, valid, state.max);
    }
  });
  return output;
}
