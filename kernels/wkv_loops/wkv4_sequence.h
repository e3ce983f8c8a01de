// RWKV-4's WKV over a whole sequence, float32, token by token: see wkv4_sequence.cpp.
#pragma once
#include <ATen/ATen.h>

#include <vector>

at::Tensor wkv4_sequence(const at::Tensor& time_decay, const at::Tensor& time_first, const at::Tensor& k,
                         const at::Tensor& v, const std::vector<at::Tensor>& state_in,
                         const std::vector<at::Tensor>& state_out);
