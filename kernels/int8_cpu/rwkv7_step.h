// One RWKV-7 layer for one token per row, int8 projections: see rwkv7_step.cpp.
#pragma once
#include <ATen/ATen.h>

#include <vector>

void rwkv7_layer_step(at::Tensor x, at::Tensor v_first, const at::Tensor& att_in, const at::Tensor& ffn_in,
                      const at::Tensor& wkv_in, at::Tensor att_out, at::Tensor ffn_out, at::Tensor wkv_out,
                      const std::vector<at::Tensor>& weights, int64_t heads, bool first_layer, double eps,
                      double group_norm_eps, double decay_scale);
