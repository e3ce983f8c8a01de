// The Python module of kernels/wkv_loops (built by kernels/wkv_loops/__init__.py).
#include <torch/extension.h>

#include "wkv4_sequence.h"
#include "wkv7_sequence.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("wkv4_sequence", &wkv4_sequence, "RWKV-4 WKV over T tokens, float32 (see wkv4_sequence.cpp)");
  m.def("wkv7_sequence", &wkv7_sequence, "RWKV-7 WKV over T tokens, float32 (see wkv7_sequence.cpp)");
}
