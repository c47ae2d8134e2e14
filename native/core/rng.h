// The reference's initial noise: torch.manual_seed(seed) then randn(shape, float32) on the CPU
// generator (what diffusers' randn_tensor does with a CPU generator).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace wan {

at::Tensor randnLikeReference(uint64_t seed, const std::vector<int64_t>& shape);

}  // namespace wan
