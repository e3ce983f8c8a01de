// One RWKV-7 (x070) layer for one token per row on the CPU, int8 projections: the arithmetic of
// rwkv_app/models/rwkv7/modeling.py (Rwkv7Block at T = 1, its reference) in one call instead of ~90 torch ops.
// Elementwise work, the delta-rule state update and the norms are plain loops (float32); the six projections
// run the int8 x bfloat16 kernel (int8_bf16_mm.cpp), the low-rank branches a float32 dot product per output.
// Called once per layer by rwkv_app/models/rwkv7/cpu_decode.py, which documents the weights' order.
#include "rwkv7_step.h"

#include "layer_step.h"

namespace {

using namespace layer_step;

enum Weight {
  kLnW, kLnB, kMixR, kMixW, kMixK, kMixV, kMixA, kMixG, kKeyNorm, kKeyRate, kBonus,
  kR, kRScales, kK, kKScales, kV, kVScales, kO, kOScales,
  kW1, kW2, kW2Bias, kA1, kA2, kA2Bias, kG1, kG2, kV1, kV2, kV2Bias, kGroupW, kGroupB,
  kFfnLnW, kFfnLnB, kFfnMix, kKey, kKeyScales, kValue, kValueScales, kWeightCount
};

// One head of one row, in place on its N channels: the delta-rule step from s_in into s_out (N, N) [value, key],
// then the per-head GroupNorm, the bonus term and the output gate. Inputs are the head's slices.
struct HeadStep {
  const float *r, *k, *v, *a, *b, *w, *group_w, *group_b, *bonus, *gate;
  int64_t N;
  double group_eps;

  void run(const float* s_in, float* s_out, float* out) const {
    for (int64_t i = 0; i < N; ++i) {
      const __m512 removed = _mm512_set1_ps(dot(s_in + i * N, a, N));  // (S a)_i
      const __m512 value = _mm512_set1_ps(v[i]);
      __m512 read = _mm512_setzero_ps();
      for (int64_t j = 0; j < N; j += 16) {
        const __m512 kept = _mm512_mul_ps(_mm512_loadu_ps(s_in + i * N + j), _mm512_loadu_ps(w + j));
        const __m512 added = _mm512_fmadd_ps(removed, _mm512_loadu_ps(b + j),
                                             _mm512_mul_ps(value, _mm512_loadu_ps(k + j)));
        const __m512 next = _mm512_add_ps(kept, added);
        _mm512_storeu_ps(s_out + i * N + j, next);
        read = _mm512_fmadd_ps(next, _mm512_loadu_ps(r + j), read);
      }
      out[i] = _mm512_reduce_add_ps(read);  // (S' r)_i
    }
    double sum = 0, squares = 0;
    for (int64_t i = 0; i < N; ++i) sum += out[i];
    const double mean = sum / N;
    for (int64_t i = 0; i < N; ++i) squares += (out[i] - mean) * (out[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(squares / N + group_eps));
    float rk = 0;
    for (int64_t j = 0; j < N; ++j) rk += r[j] * k[j] * bonus[j];
    for (int64_t i = 0; i < N; ++i) {
      const float normed = (out[i] - static_cast<float>(mean)) * inv * group_w[i] + group_b[i];
      out[i] = (normed + rk * v[i]) * gate[i];
    }
  }
};

}  // namespace

// x (B, C) float32, the residual stream, updated in place; v_first (B, C): written by the first layer, read by the
// others; att_in/ffn_in (B, C) and wkv_in (B, H, N, N) the layer's state (rows may be strided), att_out/ffn_out/
// wkv_out where its new state goes (not overlapping the inputs). weights: see enum Weight and cpu_decode.py.
void rwkv7_layer_step(Tensor x, Tensor v_first, const Tensor& att_in, const Tensor& ffn_in, const Tensor& wkv_in,
                      Tensor att_out, Tensor ffn_out, Tensor wkv_out, const std::vector<Tensor>& weights,
                      int64_t heads, bool first_layer, double eps, double group_norm_eps, double decay_scale) {
  TORCH_CHECK(weights.size() == kWeightCount, "rwkv7_layer_step: ", kWeightCount, " weights, got ", weights.size());
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: (B, C) float32");
  const int64_t B = x.size(0), C = x.size(1), N = C / heads;
  TORCH_CHECK(heads > 0 && N * heads == C && N % 16 == 0, "rwkv7_layer_step: head size must be a multiple of 16");
  const int64_t I = weights[kKeyScales].numel();
  for (const Tensor* t : std::initializer_list<const Tensor*>{&v_first, &att_in, &ffn_in, &att_out, &ffn_out})
    TORCH_CHECK(t->dim() == 2 && t->size(0) == B && t->size(1) == C && t->stride(1) == 1 &&
                    t->scalar_type() == at::kFloat, "rwkv7_layer_step: token shifts and v_first are (B, C) float32");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&wkv_in, &wkv_out})
    TORCH_CHECK(t->dim() == 4 && t->size(0) == B && t->size(1) == heads && t->size(2) == N && t->size(3) == N &&
                    t->scalar_type() == at::kFloat && t->stride(1) == N * N && t->stride(2) == N && t->stride(3) == 1,
                "rwkv7_layer_step: WKV states are (B, H, N, N) float32, each row contiguous");
  const auto& w = weights;
  auto f = [&](Weight i, int64_t n) { return vec(w[i], n, "a layer vector"); };
  const Int8Weight proj_r = int8_weight(w[kR], w[kRScales], C, C, "r_proj"),
                   proj_k = int8_weight(w[kK], w[kKScales], C, C, "k_proj"),
                   proj_v = int8_weight(w[kV], w[kVScales], C, C, "v_proj"),
                   proj_o = int8_weight(w[kO], w[kOScales], C, C, "o_proj"),
                   ffn_key = int8_weight(w[kKey], w[kKeyScales], C, I, "ffn.key"),
                   ffn_value = int8_weight(w[kValue], w[kValueScales], I, C, "ffn.value");
  std::vector<uint16_t> bf16;
  float* xs = x.data_ptr<float>();

  // Time mixing: layer norm (the new token shift), six mixes, three projections, four low-rank branches.
  Tensor mixes = at::empty({6, B, C}, x.options());  // xr, xw, xk, xv, xa, xg
  float* mix = mixes.data_ptr<float>();
  const float* mix_vectors[6] = {f(kMixR, C), f(kMixW, C), f(kMixK, C), f(kMixV, C), f(kMixA, C), f(kMixG, C)};
  for (int64_t row = 0; row < B; ++row) {
    float* normed = att_out.data_ptr<float>() + row * att_out.stride(0);
    const float* shift = att_in.data_ptr<float>() + row * att_in.stride(0);
    layer_norm(xs + row * C, normed, C, f(kLnW, C), f(kLnB, C), eps);
    for (int m = 0; m < 6; ++m)
      for (int64_t c = 0; c < C; ++c)
        mix[(m * B + row) * C + c] = normed[c] + (shift[c] - normed[c]) * mix_vectors[m][c];
  }
  Tensor rkv = at::empty({3, B, C}, x.options());
  float *r = rkv.data_ptr<float>(), *k = r + B * C, *v = k + B * C;
  project(proj_r, mix, B, r, bf16);
  project(proj_k, mix + 2 * B * C, B, k, bf16);
  project(proj_v, mix + 3 * B * C, B, v, bf16);
  const Tensor none;
  const Tensor decay = linear_f32(linear_f32(mixes[1], w[kW1], none).tanh_(), w[kW2], w[kW2Bias])
                           .sigmoid_();  // -log_w / decay_scale
  const Tensor rate = linear_f32(linear_f32(mixes[4], w[kA1], none), w[kA2], w[kA2Bias]).sigmoid_();
  const Tensor gate = linear_f32(linear_f32(mixes[5], w[kG1], none).sigmoid_(), w[kG2], none);
  const Tensor residual = first_layer ? Tensor()
      : linear_f32(linear_f32(mixes[3], w[kV1], none), w[kV2], w[kV2Bias]).sigmoid_();

  // Per row: the normalised key kk, the rate-scaled key, the value residual, the decay; a = -kk, b = kk * rate.
  Tensor vectors = at::empty({3, B, C}, x.options());  // a, b, out
  float *del_a = vectors.data_ptr<float>(), *del_b = del_a + B * C, *out = del_b + B * C;
  Tensor decays_t = at::empty({B, C}, x.options());
  float* decays = decays_t.data_ptr<float>();
  const __m512 log_scale = _mm512_set1_ps(static_cast<float>(-decay_scale));
  for (int64_t i = 0; i < B * C; i += 16) {  // exp(log_w), log_w = -decay_scale * sigmoid(.) in (-0.61, 0)
    const __mmask16 valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, B * C - i)) - 1);
    const __m512 log_w = _mm512_mul_ps(log_scale, _mm512_maskz_loadu_ps(valid, decay.data_ptr<float>() + i));
    _mm512_mask_storeu_ps(decays + i, valid, exp16(log_w));
  }
  const float *key_norm = f(kKeyNorm, C), *key_rate = f(kKeyRate, C), *rates = rate.data_ptr<float>();
  const float* mixed_in = first_layer ? nullptr : residual.data_ptr<float>();  // the value residual's weights
  for (int64_t row = 0; row < B; ++row) {
    float* vf = v_first.data_ptr<float>() + row * v_first.stride(0);
    for (int64_t c0 = 0; c0 < C; c0 += N) {
      float squares = 0;
      for (int64_t c = c0; c < c0 + N; ++c) squares += (k[row * C + c] * key_norm[c]) * (k[row * C + c] * key_norm[c]);
      const float inv = 1.f / std::max(std::sqrt(squares), 1e-12f);
      for (int64_t c = c0; c < c0 + N; ++c) {
        const int64_t i = row * C + c;
        const float kk = k[i] * key_norm[c] * inv, a = rates[i];
        del_a[i] = -kk;
        del_b[i] = kk * a;
        k[i] = k[i] * (1.f + (a - 1.f) * key_rate[c]);
        if (first_layer) vf[c] = v[i];
        else v[i] = v[i] + (vf[c] - v[i]) * mixed_in[i];
      }
    }
  }
  const float *group_w = f(kGroupW, C), *group_b = f(kGroupB, C), *bonus = f(kBonus, C);
  const float* gates = gate.data_ptr<float>();
  const float* s_in = wkv_in.data_ptr<float>();
  float* s_out = wkv_out.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, kSerialWork / (N * N * 4));  // a head's update: ~4 N^2 flops
  at::parallel_for(0, B * heads, grain, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t row = task / heads, c0 = (task % heads) * N, i = row * C + c0;
      const HeadStep head{r + i, k + i, v + i, del_a + i, del_b + i, decays + i, group_w + c0, group_b + c0,
                          bonus + c0, gates + i, N, group_norm_eps};
      head.run(s_in + row * wkv_in.stride(0) + c0 * N, s_out + row * wkv_out.stride(0) + c0 * N, out + i);
    }
  });
  project(proj_o, out, B, r, bf16);  // r is free again: the attention's output
  for (int64_t i = 0; i < B * C; ++i) xs[i] += r[i];

  // Channel mixing: layer norm (the new token shift), one mix, key, squared ReLU, value.
  const float* ffn_mix = f(kFfnMix, C);
  for (int64_t row = 0; row < B; ++row) {
    float* normed = ffn_out.data_ptr<float>() + row * ffn_out.stride(0);
    const float* shift = ffn_in.data_ptr<float>() + row * ffn_in.stride(0);
    layer_norm(xs + row * C, normed, C, f(kFfnLnW, C), f(kFfnLnB, C), eps);
    for (int64_t c = 0; c < C; ++c) mix[row * C + c] = normed[c] + (shift[c] - normed[c]) * ffn_mix[c];
  }
  Tensor hidden = at::empty({B, I}, x.options());
  float* h = hidden.data_ptr<float>();
  project(ffn_key, mix, B, h, bf16);
  for (int64_t i = 0; i < B * I; ++i) h[i] = h[i] > 0.f ? h[i] * h[i] : 0.f;
  project(ffn_value, h, B, r, bf16);
  for (int64_t i = 0; i < B * C; ++i) xs[i] += r[i];
}
