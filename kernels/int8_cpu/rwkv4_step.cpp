// One RWKV-4 layer for one token per row on the CPU, int8 projections: the arithmetic of
// rwkv_app/models/rwkv4/modeling.py (RwkvBlock at T = 1, its reference, with kernels/reference.py's WKV) in one
// call instead of ~45 torch ops. Elementwise work and the WKV step are loops (float32, e^x by cpu_math.h's exp16);
// the seven projections run the int8 x bfloat16 kernel. Called once per layer by
// rwkv_app/models/rwkv4/cpu_decode.py, which documents the weights' order.
#include "rwkv4_step.h"

#include "layer_step.h"

namespace {

using namespace layer_step;

enum Weight {
  kLn1W, kLn1B, kAttMixK, kAttMixV, kAttMixR, kDecay, kFirst,
  kAttK, kAttKScales, kAttV, kAttVScales, kAttR, kAttRScales, kAttO, kAttOScales,
  kLn2W, kLn2B, kFfnMixK, kFfnMixR, kFfnK, kFfnKScales, kFfnR, kFfnRScales, kFfnV, kFfnVScales, kWeightCount
};
enum State { kFfnShift, kAttShift, kNum, kDen, kMax, kStateCount };  // state.py's order

float lerp(float start, float end, float weight) {  // torch.lerp's two-sided form
  return weight < 0.5f ? start + weight * (end - start) : end - (end - start) * (1.f - weight);
}

// Layer norm of each row of x into `normed` (B, C) and into the new token shift; then one mix per vector in `mixes`.
void norm_and_mix(const float* x, int64_t B, int64_t C, const float* weight, const float* bias, double eps,
                  const Rows& shift_in, const Rows& shift_out, std::initializer_list<const float*> mixes, float* out) {
  std::vector<float> normed(C);
  for (int64_t b = 0; b < B; ++b) {
    layer_norm(x + b * C, normed.data(), C, weight, bias, eps);
    int64_t m = 0;
    for (const float* mix : mixes) {
      for (int64_t c = 0; c < C; ++c) out[(m * B + b) * C + c] = lerp(shift_in(b, c), normed[c], mix[c]);
      ++m;
    }
    for (int64_t c = 0; c < C; ++c) shift_out(b, c) = normed[c];
  }
}

// kernels/reference.py's WKV for one token, 16 channels at a time (kernels/wkv_loops/cpu_math.h's wkv4_token): the
// output into `out` (times r and out_scale), the new (num, den, max) into the state's out slices.
void wkv_step(int64_t B, int64_t A, const float* k, const float* v, const float* r, const float* decay,
              const float* first, const Rows* in, const Rows* out_state, float out_scale, float* out) {
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c0 = 0; c0 < A; c0 += 16) {
      const __mmask16 valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, A - c0)) - 1);
      float lanes[3][16] = {};  // num, den, max of 16 channels
      for (int64_t c = c0; c < std::min(A, c0 + 16); ++c)
        for (int s = 0; s < 3; ++s) lanes[s][c - c0] = in[kNum + s](b, c);
      Wkv4Lanes state{_mm512_loadu_ps(lanes[0]), _mm512_loadu_ps(lanes[1]), _mm512_loadu_ps(lanes[2])};
      const __m512 kt = _mm512_maskz_loadu_ps(valid, k + b * A + c0), vt = _mm512_maskz_loadu_ps(valid, v + b * A + c0);
      const __m512 u = _mm512_maskz_loadu_ps(valid, first + c0);
      const __m512 w = _mm512_sub_ps(_mm512_setzero_ps(), exp16(_mm512_maskz_loadu_ps(valid, decay + c0)));
      const __m512 wkv = wkv4_token(state, kt, vt, u, w);
      const __m512 gated = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(valid, r + b * A + c0), wkv),
                                         _mm512_set1_ps(out_scale));
      _mm512_mask_storeu_ps(out + b * A + c0, valid, gated);
      _mm512_storeu_ps(lanes[0], state.num);
      _mm512_storeu_ps(lanes[1], state.den);
      _mm512_storeu_ps(lanes[2], state.max);
      for (int64_t c = c0; c < std::min(A, c0 + 16); ++c)
        for (int s = 0; s < 3; ++s) out_state[kNum + s](b, c) = lanes[s][c - c0];
    }
  }
}

}  // namespace

// x (B, H) float32, the residual stream, updated in place; state_in/state_out: the layer's five (B, C) slices in
// state.py's order (strided views are fine; out must not overlap in); weights: see enum Weight and cpu_decode.py;
// out_scale: rescale_every's power of two on the two output projections' inputs.
void rwkv4_layer_step(at::Tensor x, const std::vector<at::Tensor>& state_in, const std::vector<at::Tensor>& state_out,
                      const std::vector<at::Tensor>& weights, double eps, double out_scale) {
  TORCH_CHECK(weights.size() == kWeightCount, "rwkv4_layer_step: ", kWeightCount, " weights, got ", weights.size());
  TORCH_CHECK(state_in.size() == kStateCount && state_out.size() == kStateCount, "rwkv4_layer_step: 5 state slices");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: (B, H) float32");
  const auto& w = weights;
  const int64_t B = x.size(0), H = x.size(1), A = w[kAttKScales].numel(), I = w[kFfnKScales].numel();
  std::vector<Rows> in, out;
  for (int s = 0; s < kStateCount; ++s) {
    const int64_t C = s < kNum ? H : A;
    in.emplace_back(state_in[s], B, C, "a state slice");
    out.emplace_back(state_out[s], B, C, "a state slice");
  }
  auto f = [&](Weight i, int64_t n) { return vec(w[i], n, "a layer vector"); };
  const Int8Weight att_k = int8_weight(w[kAttK], w[kAttKScales], H, A, "attention.key"),
                   att_v = int8_weight(w[kAttV], w[kAttVScales], H, A, "attention.value"),
                   att_r = int8_weight(w[kAttR], w[kAttRScales], H, A, "attention.receptance"),
                   att_o = int8_weight(w[kAttO], w[kAttOScales], A, H, "attention.output"),
                   ffn_k = int8_weight(w[kFfnK], w[kFfnKScales], H, I, "feed_forward.key"),
                   ffn_r = int8_weight(w[kFfnR], w[kFfnRScales], H, H, "feed_forward.receptance"),
                   ffn_v = int8_weight(w[kFfnV], w[kFfnVScales], I, H, "feed_forward.value");
  std::vector<uint16_t> bf16;
  float* xs = x.data_ptr<float>();
  Tensor mixes = at::empty({3, B, H}, x.options());
  Tensor key_value = at::empty({2, B, A}, x.options());
  float *mix = mixes.data_ptr<float>(), *key = key_value.data_ptr<float>(), *value = key + B * A;

  // Time mixing: layer norm, three mixes, three projections, the WKV step, the output projection.
  norm_and_mix(xs, B, H, f(kLn1W, H), f(kLn1B, H), eps, in[kAttShift], out[kAttShift],
               {f(kAttMixK, H), f(kAttMixV, H), f(kAttMixR, H)}, mix);
  project(att_k, mix, B, key, bf16);
  project(att_v, mix + B * H, B, value, bf16);
  Tensor gate = at::empty({B, A}, x.options());
  project(att_r, mix + 2 * B * H, B, gate.data_ptr<float>(), bf16);
  gate.sigmoid_();
  Tensor mixed = at::empty({B, A}, x.options());
  wkv_step(B, A, key, value, gate.data_ptr<float>(), f(kDecay, A), f(kFirst, A), in.data(), out.data(),
           static_cast<float>(out_scale), mixed.data_ptr<float>());
  Tensor residual = at::empty({B, H}, x.options());
  float* add = residual.data_ptr<float>();
  project(att_o, mixed.data_ptr<float>(), B, add, bf16);
  for (int64_t i = 0; i < B * H; ++i) xs[i] += add[i];

  // Channel mixing: layer norm, two mixes, key, squared ReLU, value, gated by sigmoid(receptance).
  norm_and_mix(xs, B, H, f(kLn2W, H), f(kLn2B, H), eps, in[kFfnShift], out[kFfnShift],
               {f(kFfnMixK, H), f(kFfnMixR, H)}, mix);
  Tensor hidden = at::empty({B, I}, x.options());
  float* h = hidden.data_ptr<float>();
  project(ffn_k, mix, B, h, bf16);
  const float scale = static_cast<float>(out_scale);
  for (int64_t i = 0; i < B * I; ++i) h[i] = h[i] > 0.f ? h[i] * h[i] * scale : 0.f;
  Tensor ffn_gate = at::empty({B, H}, x.options());
  project(ffn_r, mix + B * H, B, ffn_gate.data_ptr<float>(), bf16);
  ffn_gate.sigmoid_();
  project(ffn_v, h, B, add, bf16);
  const float* g = ffn_gate.data_ptr<float>();
  for (int64_t i = 0; i < B * H; ++i) xs[i] += g[i] * add[i];
}
