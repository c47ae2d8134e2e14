#include "rng.h"

#include <ATen/CPUGeneratorImpl.h>


namespace wan {

at::Tensor randnLikeReference(uint64_t seed, const std::vector<int64_t>& shape) {
  // A private generator: same mt19937 stream as torch.Generator('cpu').manual_seed(seed), without
  // touching the global one.
  // (randn takes the generator's mutex itself.)
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace wan
