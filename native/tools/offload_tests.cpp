// C++ tests of the offload machinery that JS cannot see: HostArena packs host copies into chunks
// with values, dtypes and alignment intact; a DiT gives bit-identical outputs in every weight
// placement (resident, offloaded before and after upload(), streamed) and holds the device bytes
// each placement promises. On the CPU an upload is the very tensor, so this checks the bookkeeping
// and the block order, not DMA; the GPU side is bench/device/run.sh's.
// Run by test/offload.test.ts; prints one line per check and exits non-zero on failure.
#include <ATen/ATen.h>

#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "core/tensor_io.h"
#include "core/weight_transfer.h"
#include "models/umt5_encoder.h"
#include "models/wan_transformer.h"
#include "models/wan_vae.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  if (!ok) ++failures;
}

bool aligned(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % wan::HostArena::kAlignment == 0; }

void hostArena() {
  // 896-byte chunks: two 400-byte tensors (448 with alignment) share one, a 2048-byte tensor
  // gets one of its size, the last one a new chunk.
  wan::HostArena arena(/*pin=*/false, /*chunkBytes=*/896);
  at::Tensor a = at::randn({10, 10});                           // 400 B float32
  at::Tensor b = at::randn({200}).to(at::kBFloat16);            // 400 B
  at::Tensor c = at::arange(512, at::kInt).view({16, 32});      // 2048 B
  at::Tensor d = at::randn({6, 4}).t();                         // not contiguous
  at::Tensor ca = arena.copy(a), cb = arena.copy(b), cc = arena.copy(c), cd = arena.copy(d);
  check(at::equal(ca, a) && at::equal(cb, b) && at::equal(cc, c) && at::equal(cd, d), "arena copies keep every value");
  check(ca.scalar_type() == at::kFloat && cb.scalar_type() == at::kBFloat16 && cc.scalar_type() == at::kInt && cc.sizes() == c.sizes() &&
            cd.sizes() == d.sizes() && cd.is_contiguous(),
        "arena copies keep dtype and shape, and are contiguous");
  check(aligned(ca) && aligned(cb) && aligned(cc) && aligned(cd), "arena copies start on the alignment");
  check(ca.data_ptr() != a.data_ptr(), "arena copies are copies");
  check(ca.storage().is_alias_of(cb.storage()), "small tensors share a chunk");
  check(arena.chunkCount() == 3 && arena.reservedBytes() == 896 + 2048 + 896, "a tensor larger than a chunk gets a chunk of its size");
  check(arena.usedBytes() == 400 + 400 + 2048 + 96, "usedBytes counts the tensors' bytes");
  check(arena.unpinnedBytes() == 0, "an arena not asked to pin reports nothing unpinned");

  // Sized for its weights: a small model's arena is one chunk of their size, not a default chunk
  // (each pinned chunk is a page-locked allocation of its full size).
  const int64_t total = wan::HostArena::alignedBytes(a) + wan::HostArena::alignedBytes(b) + wan::HostArena::alignedBytes(c);
  wan::HostArena sized = wan::HostArena::forTotal(/*pin=*/false, total);
  sized.copy(a), sized.copy(b), sized.copy(c);
  check(sized.chunkCount() == 1 && sized.reservedBytes() == total, "an arena for a known total reserves that total, in one chunk");
  check(wan::HostArena::forTotal(false, int64_t{100} << 30).copy(a).storage().nbytes() == static_cast<size_t>(wan::HostArena::kDefaultChunkBytes),
        "a large total still comes in default-sized chunks");

  // Page-locked memory refused (a CPU-only libtorch has none): the arena goes on unpinned. With
  // CUDA the same arena is page-locked.
  wan::HostArena asked(/*pin=*/true, /*chunkBytes=*/896);
  at::Tensor ra = asked.copy(a), rc = asked.copy(c);
  if (!at::hasCUDA()) {
    check(at::equal(ra, a) && at::equal(rc, c) && asked.unpinnedBytes() == 896 + 2048 && !ra.is_pinned(),
          "pinning refused: copies land in ordinary memory, counted as unpinned");
  } else {
    check(at::equal(ra, a) && at::equal(rc, c) && asked.unpinnedBytes() == 0 && ra.is_pinned() && rc.is_pinned(),
          "pinning available: copies land in page-locked memory");
  }
}

wan::TransformerConfig tinyConfig() {
  wan::TransformerConfig c;
  c.numHeads = 2, c.headDim = 12, c.numLayers = 3, c.ffnDim = 40, c.inChannels = c.outChannels = 4, c.textDim = 16, c.freqDim = 32;
  return c;
}

void transformerPlacements() {
  using wan::WeightPlacement;
  const wan::TransformerConfig c = tinyConfig();
  wan::RandomWeights weights(7, at::kFloat, at::kCPU);
  wan::WanTransformer model(c, weights);
  at::Tensor hidden = at::randn({2, 4, 2, 4, 6}), context = at::randn({2, 5, 16}), t = at::tensor({900, 300}, at::kLong);
  wan::TransformerDebug residentDebug;
  const at::Tensor resident = model.forward(hidden, t, context, &residentDebug);
  const at::Tensor uncond = at::randn({2, 7, 16});  // a context of another length, as a negative prompt may have
  const at::Tensor residentUncond = model.forward(hidden, t, uncond);
  const int64_t total = model.parameterCount() * 4;
  check(model.placement() == WeightPlacement::Resident && model.deviceWeightBytes() == total, "resident: every weight on the device");

  auto same = [&](const std::string& what) {
    wan::TransformerDebug debug;
    at::Tensor out = model.forward(hidden, t, context, &debug);
    bool blocks = debug.tensors.size() == residentDebug.tensors.size();
    for (size_t i = 0; blocks && i < debug.tensors.size(); ++i)
      blocks = debug.tensors[i].first == residentDebug.tensors[i].first && at::equal(debug.tensors[i].second, residentDebug.tensors[i].second);
    check(at::equal(out, resident) && blocks, what + ": output and every block's output bit-identical to resident");
    // CFG's two passes in one call: each bit-identical to its own forward.
    const std::vector<at::Tensor> each = model.forwardEach(hidden, t, {context, uncond});
    check(each.size() == 2 && at::equal(each[0], resident) && at::equal(each[1], residentUncond),
          what + ": forwardEach's passes bit-identical to forward() per context");
  };

  // Bytes a call uploads: streaming pays the blocks once per forwardEach, not once per pass.
  auto uploads = [&](const std::function<void()>& call) {
    const int64_t before = model.uploadedBytes();
    call();
    return model.uploadedBytes() - before;
  };
  auto twoForwards = [&] {
    (void)model.forward(hidden, t, context);
    (void)model.forward(hidden, t, uncond);
  };
  auto forwardEach = [&] { (void)model.forwardEach(hidden, t, {context, uncond}); };
  check(uploads(forwardEach) == 0, "resident: nothing uploaded");

  model.offload(at::kCPU);
  check(model.placement() == WeightPlacement::Offloaded && model.deviceWeightBytes() == 0, "offloaded: nothing on the device before upload()");
  same("offloaded without upload() (streams)");
  check(uploads(twoForwards) == 2 * total && uploads(forwardEach) == total,
        "offloaded without upload(): two forwards upload every weight twice, forwardEach once");
  check(model.deviceWeightBytes() == 0, "offloaded: a forward without upload() leaves nothing on the device");
  model.upload();
  check(model.deviceWeightBytes() == total, "offloaded: upload() puts every weight on the device");
  same("offloaded after upload()");
  check(uploads(forwardEach) == 0, "offloaded after upload(): forwards upload nothing more");
  model.upload();
  check(model.deviceWeightBytes() == total, "offloaded: a second upload() is a no-op");
  model.release();
  check(model.deviceWeightBytes() == 0, "offloaded: release() drops the device copy");
  same("offloaded after release()");

  model.streamBlocks(at::kCPU);
  const int64_t outer = model.deviceWeightBytes();
  // The outer layers: patch embedding, time embedder/projection, text embedder, head and table.
  const int64_t dim = c.dim(), patch = c.inChannels * 4;
  const int64_t outerParams = dim * patch + dim + (c.freqDim * dim + dim) + (dim * dim + dim) + (6 * dim * dim + 6 * dim) +
                              (c.textDim * dim + dim) + (dim * dim + dim) + (c.outChannels * 4 * dim + c.outChannels * 4) + 2 * dim;
  check(model.placement() == WeightPlacement::Streamed && outer == outerParams * 4, "streamed: only the outer layers stay on the device");
  same("streamed");
  check(uploads(twoForwards) == 2 * (total - outer) && uploads(forwardEach) == total - outer,
        "streamed: two forwards stream every block twice, forwardEach once");
  model.upload();
  check(model.deviceWeightBytes() == outer, "streamed: upload() is a no-op");

  model.to(at::kCPU);
  check(model.placement() == WeightPlacement::Resident && model.deviceWeightBytes() == total, "to(): resident again");
  same("resident again");

  // bfloat16 weights through the same placements: uploads keep the dtype.
  wan::RandomWeights bfWeights(7, at::kBFloat16, at::kCPU);
  wan::WanTransformer bf(c, bfWeights);
  const at::Tensor bfResident = bf.forward(hidden, t, context);
  bf.offload(at::kCPU);
  bf.upload();
  check(at::equal(bf.forward(hidden, t, context), bfResident), "bfloat16 offloaded after upload(): bit-identical");
  bf.streamBlocks(at::kCPU);
  check(at::equal(bf.forward(hidden, t, context), bfResident), "bfloat16 streamed: bit-identical");
  const std::vector<at::Tensor> bfEach = bf.forwardEach(hidden, t, {context, uncond});
  check(at::equal(bfEach[0], bfResident) && at::equal(bfEach[1], bf.forward(hidden, t, uncond)), "bfloat16 streamed: forwardEach bit-identical");
}

int64_t visitedElements(const std::function<void(const wan::DeviceVisit::WeightFn&)>& forEach) {
  int64_t n = 0;
  forEach([&](at::Tensor& t) { n += t.defined() ? t.numel() : 0; });
  return n;
}

// A VAE visits the device whole: forEachWeight must reach every tensor the checkpoint gave (the
// loader checks that every file tensor was used), plus the two latent normalization vectors.
void vaeWeights(const std::string& fixtures) {
  for (const char* family : {"t2v-a14b-tiny", "ti2v-5b-tiny"}) {
    auto vae = wan::WanVae::load(fixtures + "/" + family + "/vae", at::kFloat, at::kCPU);
    const int64_t visited = visitedElements([&](const wan::DeviceVisit::WeightFn& fn) { vae->forEachWeight(fn); });
    check(visited == vae->parameterCount() + 2 * vae->config().zDim,
          std::string(family) + " VAE " + vae->version() + ": forEachWeight reaches every weight (" + std::to_string(visited) + " elements)");
    vae->visit(at::kCPU);
    vae->leave();
    check(vae->device() == at::Device(at::kCPU), std::string(family) + " VAE: a visit where it lives is a no-op");
  }
}

// A visit that fails part way puts every weight back and is not active. Here it fails at the first
// weight: cuda:120 exists nowhere (a CPU-only libtorch has no CUDA at all); on a GPU, running out
// of memory would fail later.
void failedVisit() {
  std::vector<at::Tensor> weights{at::ones({2}), at::zeros({3})};
  const void* first = weights[0].data_ptr();
  auto forEach = [&](const wan::DeviceVisit::WeightFn& fn) {
    for (auto& w : weights) fn(w);
  };
  wan::DeviceVisit visit;
  bool threw = false;
  try {
    visit.enter(forEach, at::kCPU, at::Device(at::kCUDA, 120));
  } catch (const std::exception&) {
    threw = true;
  }
  check(threw && !visit.active() && weights[0].data_ptr() == first && weights[0].device().is_cpu() && weights[1].device().is_cpu(),
        "a failed visit puts every weight back and is not active");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: offload_tests <fixtures dir (test/fixtures/wan-tiny)>\n";
    return 2;
  }
  try {
    hostArena();
    transformerPlacements();
    vaeWeights(argv[1]);
    failedVisit();
  } catch (const std::exception& e) {
    std::cout << "FAIL exception: " << e.what() << "\n";
    return 1;
  }
  std::cout << (failures ? "FAILED " : "all passed ") << failures << "\n";
  return failures ? 1 : 0;
}
