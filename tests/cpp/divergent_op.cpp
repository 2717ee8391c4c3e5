// An operator library whose kernel is right for small batches and wrong past 8: a stand-in for a custom kernel that
// takes another code path for large inputs and gets it wrong there. Its Python twin (tests/python/test_coverage.py)
// is right for every batch, so eager Python and the C++ runtimes that load this library (torchconform-run
// --load-library, torchconform fuzz --load-library) agree only on the batches the written input sets use: the
// negative control of the generated bound sets and of torchconform fuzz (docs/coverage.md).
#include <ATen/ATen.h>
#include <torch/library.h>

namespace {
at::Tensor scale(const at::Tensor& x) {
  at::Tensor y = x * 2;
  if (x.dim() > 0 && x.size(0) > 8) y = y * 1.001;  // the divergence: 0.1% past batch 8
  return y;
}
at::Tensor scale_meta(const at::Tensor& x) { return at::empty_like(x); }
}  // namespace

TORCH_LIBRARY(tcdiverge, m) { m.def("scale(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(tcdiverge, CPU, m) { m.impl("scale", scale); }
TORCH_LIBRARY_IMPL(tcdiverge, Meta, m) { m.impl("scale", scale_meta); }
