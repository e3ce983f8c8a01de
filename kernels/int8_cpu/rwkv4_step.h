// One RWKV-4 layer for one token per row, int8 projections: see rwkv4_step.cpp.
#pragma once
#include <ATen/ATen.h>

#include <vector>

void rwkv4_layer_step(at::Tensor x, const std::vector<at::Tensor>& state_in, const std::vector<at::Tensor>& state_out,
                      const std::vector<at::Tensor>& weights, double eps, double out_scale);
