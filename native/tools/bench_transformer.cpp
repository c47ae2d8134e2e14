// CPU/GPU timing of WanTransformer forwards (no Node):
//   bench_transformer [--tiny <transformer dir>] [--mid [--layers N]] [--iters N] [--threads N] [--device cpu|cuda] [--dtype float32|bfloat16|float16]
// --tiny times the fixture checkpoint at its case size ([2,16,3,4,6], 512 text rows); --mid a
// synthetic model (dim 1536 = 12 heads x 128, 8 layers unless --layers, ffn 8960, random weights) on
// [1,16,4,64,64] latents = 4096 tokens with 512 text rows of 4096.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "models/wan_transformer.h"

using namespace wan;

namespace {

double peakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

void sync(at::Device device) {
  if (device.is_cuda()) at::empty({1}, at::TensorOptions().device(device)).cpu();  // waits for the stream
}

// Median wall time (ms) of `iters` forwards after one warm-up when warmup is set.
double timeForwards(const WanTransformer& model, const at::Tensor& hidden, const at::Tensor& t, const at::Tensor& ctx, int iters, bool warmup) {
  if (warmup) model.forward(hidden, t, ctx);
  sync(model.device());
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    auto start = std::chrono::steady_clock::now();
    at::Tensor out = model.forward(hidden, t, ctx);
    sync(model.device());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Matmul FLOPs of one forward: 2 * tokens * (linear weights per token) + attention.
double forwardFlops(const TransformerConfig& c, int64_t batch, int64_t tokens, int64_t textLen) {
  const double d = static_cast<double>(c.dim()), ffn = static_cast<double>(c.ffnDim);
  const double perTokenBlock = 4 * d * d + 2 * d * d + 2 * d * ffn;  // self qkvo, cross q/o, ffn
  const double perTextBlock = 2 * d * d;                              // cross k/v
  const double attn = 4.0 * tokens * tokens * d + 4.0 * tokens * textLen * d;
  const double blocks = c.numLayers * (2.0 * tokens * perTokenBlock + 2.0 * textLen * perTextBlock + attn);
  return batch * blocks;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tinyDir, deviceName = "cpu", dtypeName = "float32";
  bool mid = false;
  int iters = 3, threads = 0, layers = 8;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tiny" && i + 1 < argc) tinyDir = argv[++i];
    else if (a == "--mid") mid = true;
    else if (a == "--layers" && i + 1 < argc) layers = std::max(1, std::atoi(argv[++i]));
    else if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--iters" && i + 1 < argc) iters = std::max(1, std::atoi(argv[++i]));
    else if (a == "--device" && i + 1 < argc) deviceName = argv[++i];
    else if (a == "--dtype" && i + 1 < argc) dtypeName = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_transformer [--tiny <transformer dir>] [--mid [--layers N]] [--iters N] [--threads N] [--device D] [--dtype T]\n");
      return 2;
    }
  }
  try {
    configureThreads();
    if (threads > 0) at::set_num_threads(threads);
    const at::Device device = parseDevice(deviceName);
    const at::ScalarType dtype = parseDtype(dtypeName);
    std::printf("libtorch %s, %d threads, device %s, dtype %s\n", TORCH_VERSION, at::get_num_threads(), device.str().c_str(), dtypeName.c_str());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
    auto randn = [&](std::vector<int64_t> shape) { return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)); };

    if (!tinyDir.empty()) {
      auto model = WanTransformer::load(tinyDir, dtype, device);
      at::Tensor hidden = randn({2, model->config().inChannels, 3, 4, 6}), ctx = randn({2, 512, model->config().textDim});
      at::Tensor t = at::full({2}, 937, at::kLong);
      double ms = timeForwards(*model, hidden, t, ctx, std::max(iters, 5), true);
      std::printf("tiny  (%s, dim %lld, %lld layers, 18 tokens, batch 2): %.2f ms per forward (median of %d)\n", tinyDir.c_str(),
                  (long long)model->config().dim(), (long long)model->config().numLayers, ms, std::max(iters, 5));
    }
    if (mid) {
      TransformerConfig c;
      c.numHeads = 12, c.headDim = 128, c.numLayers = layers, c.ffnDim = 8960, c.inChannels = c.outChannels = 16, c.textDim = 4096;
      RandomWeights weights(42, dtype, device);
      auto start = std::chrono::steady_clock::now();
      WanTransformer model(c, weights);
      double buildMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      at::Tensor hidden = randn({1, 16, 4, 64, 64}), ctx = randn({1, 512, 4096});
      at::Tensor t = at::full({1}, 937, at::kLong);
      const int64_t tokens = 4 * 32 * 32;
      double ms = timeForwards(model, hidden, t, ctx, iters, false);
      double tflop = forwardFlops(c, 1, tokens, 512) / 1e12;
      std::printf("mid   (dim %lld, %lld layers, ffn %lld, %lld params, %lld tokens, 512 text rows): %.1f ms per forward (median of %d, no warm-up), "
                  "%.2f TFLOP -> %.1f GFLOP/s; weights built in %.0f ms\n",
                  (long long)c.dim(), (long long)c.numLayers, (long long)c.ffnDim, (long long)model.parameterCount(), (long long)tokens, ms, iters,
                  tflop, tflop * 1e3 / (ms / 1e3), buildMs);
    }
    std::printf("peak RSS %.0f MiB\n", peakRssMiB());
  } catch (const WanError& e) {
    std::fprintf(stderr, "%s: %s\n", errorCodeName(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
