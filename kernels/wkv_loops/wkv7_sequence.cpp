// RWKV-7's WKV (the delta rule) over T tokens on the CPU, float32: kernels/rwkv7/reference.py's loop, token by
// token, each head's (N, N) state kept in the core's L1 cache for the whole sequence. Per token and head,
//     S <- S diag(w) + (S a) b^T + v k^T,   o = S r          (S indexed [value i, key j])
// The state is held transposed (row j = key channel j, N values i), so S a, the update and S r are sums of whole
// rows with no horizontal adds, and one pass over the rows per token does all three: writing new row j adds it
// into o (times r_j) and into the next token's S a (times its a_j). Autograd and other head sizes use the
// chunked form in kernels/rwkv7/cpu.py; kernels/rwkv7/cpp.py calls this and tests/test_kernels7_cpu.py holds it to
// the reference.
#include "wkv7_sequence.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <vector>

#include "cpu_math.h"

namespace {

// One head's T tokens. V = N / 16 vectors per state row; `state` is the head's (N, N) state transposed
// [key j][value i], updated in place; inputs and out advance by `stride` floats a token.
template <int V>
void head_tokens(float* state, int64_t T, int64_t stride, const float* r, const float* w, const float* k,
                 const float* v, const float* a, const float* b, float* out) {
  constexpr int N = V * 16;
  __m512 removed[V], partial[2][V];  // S a for the token about to run, summed in the order the loop below sums it
  for (int c = 0; c < V; ++c) partial[0][c] = partial[1][c] = _mm512_setzero_ps();
  for (int j = 0; j < N; ++j)
    for (int c = 0; c < V; ++c)
      partial[j & 1][c] = _mm512_fmadd_ps(_mm512_loadu_ps(state + j * N + 16 * c), _mm512_set1_ps(a[j]),
                                          partial[j & 1][c]);
  for (int c = 0; c < V; ++c) removed[c] = _mm512_add_ps(partial[0][c], partial[1][c]);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t now = t * stride, next = (t + 1 < T ? t + 1 : t) * stride;  // the last token's "next" is unused
    __m512 value[V], read[2][V], next_removed[2][V];  // two partial sums each: shorter dependency chains
    for (int c = 0; c < V; ++c) {
      value[c] = _mm512_loadu_ps(v + now + 16 * c);
      read[0][c] = read[1][c] = next_removed[0][c] = next_removed[1][c] = _mm512_setzero_ps();
    }
    for (int j = 0; j < N; ++j) {
      const int half = j & 1;
      const __m512 wj = _mm512_set1_ps(w[now + j]), bj = _mm512_set1_ps(b[now + j]),
                   kj = _mm512_set1_ps(k[now + j]), rj = _mm512_set1_ps(r[now + j]),
                   next_aj = _mm512_set1_ps(a[next + j]);
      for (int c = 0; c < V; ++c) {
        float* row = state + j * N + 16 * c;
        const __m512 added = _mm512_fmadd_ps(removed[c], bj, _mm512_mul_ps(value[c], kj));  // (S a) b_j + v k_j
        const __m512 updated = _mm512_fmadd_ps(_mm512_loadu_ps(row), wj, added);  // column j of the new S
        _mm512_storeu_ps(row, updated);
        read[half][c] = _mm512_fmadd_ps(updated, rj, read[half][c]);
        next_removed[half][c] = _mm512_fmadd_ps(updated, next_aj, next_removed[half][c]);
      }
    }
    for (int c = 0; c < V; ++c) {
      _mm512_storeu_ps(out + now + 16 * c, _mm512_add_ps(read[0][c], read[1][c]));
      removed[c] = _mm512_add_ps(next_removed[0][c], next_removed[1][c]);
    }
  }
}

using HeadTokens = void (*)(float*, int64_t, int64_t, const float*, const float*, const float*, const float*,
                            const float*, const float*, float*);

HeadTokens for_head_size(int64_t N) {
  switch (N) {
    case 16: return head_tokens<1>;
    case 32: return head_tokens<2>;
    case 64: return head_tokens<4>;
    case 128: return head_tokens<8>;
    default: return nullptr;
  }
}

}  // namespace

// r, w (the decay, exp(log_w)), k, v, a, b: (B, T, H, N) contiguous float32; state_in (B, H, N, N) float32
// [value, key]; state_out the same shape, where the final state goes (it may be state_in). Returns o (B, T, H, N).
at::Tensor wkv7_sequence(const at::Tensor& r, const at::Tensor& w, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& a, const at::Tensor& b, const at::Tensor& state_in, at::Tensor state_out) {
  TORCH_CHECK(r.dim() == 4, "wkv7_sequence: inputs are (B, T, H, N)");
  const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
  for (const at::Tensor* t : {&r, &w, &k, &v, &a, &b})
    TORCH_CHECK(t->sizes() == r.sizes() && t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                "wkv7_sequence: r, w, k, v, a, b are contiguous float32 CPU tensors of one shape");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&state_in, &state_out})
    TORCH_CHECK(t->dim() == 4 && t->size(0) == B && t->size(1) == H && t->size(2) == N && t->size(3) == N &&
                    t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                "wkv7_sequence: states are contiguous (B, H, N, N) float32 CPU tensors");
  const HeadTokens run = for_head_size(N);
  TORCH_CHECK(run != nullptr, "wkv7_sequence: head size must be 16, 32, 64 or 128, got ", N);
  at::Tensor out = at::empty_like(r);
  const float *in = state_in.data_ptr<float>(), *pr = r.data_ptr<float>(), *pw = w.data_ptr<float>(),
              *pk = k.data_ptr<float>(), *pv = v.data_ptr<float>(), *pa = a.data_ptr<float>(),
              *pb = b.data_ptr<float>();
  float *final = state_out.data_ptr<float>(), *po = out.data_ptr<float>();
  const int64_t C = H * N, grain = std::max<int64_t>(1, cpu_math::kSerialWork / (T * N * N * 4));
  at::parallel_for(0, B * H, grain, [&](int64_t first, int64_t last) {
    std::vector<float> transposed(N * N);  // [key j][value i]
    for (int64_t head = first; head < last; ++head) {
      const float* s_in = in + head * N * N;
      float* s_out = final + head * N * N;
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) transposed[j * N + i] = s_in[i * N + j];
      const int64_t offset = (head / H) * T * C + (head % H) * N;  // row head / H, token 0, head head % H
      run(transposed.data(), T, C, pr + offset, pw + offset, pk + offset, pv + offset, pa + offset, pb + offset,
          po + offset);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) s_out[i * N + j] = transposed[j * N + i];
    }
  });
  return out;
}
