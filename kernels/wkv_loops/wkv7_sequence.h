// RWKV-7's WKV over a whole sequence, float32, token by token: see wkv7_sequence.cpp.
#pragma once
#include <ATen/ATen.h>

at::Tensor wkv7_sequence(const at::Tensor& r, const at::Tensor& w, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& a, const at::Tensor& b, const at::Tensor& state_in, at::Tensor state_out);
