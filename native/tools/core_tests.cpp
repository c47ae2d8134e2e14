// C++ tests of native/core that JS cannot see: a float32 CPU weight loaded through WeightLoader is a
// view of the file's mapping (no copy), the view keeps the mapping alive, and writing to it changes
// neither the file nor another open of it (private copy-on-write mapping); and loading stops
// between tensors, the attention fallback and the VAE decoder between blocks, when cancelled.
// Run by test/safetensors-zero-copy.test.ts; prints one line per check and exits non-zero on failure.
#include <ATen/ATen.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/tensor_io.h"
#include "models/attention.h"
#include "models/wan_vae.h"
#include "models/wan_vae_blocks.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  if (!ok) ++failures;
}

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A file with float32 'w' [2, 3] = 0..5 and bf16 'b' [2]; header padded so the data is 8-aligned.
void writeFixture(const std::string& path) {
  std::string header = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]}})";
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  for (int i = 0; i < 6; ++i) {
    float v = static_cast<float>(i);
    out.write(reinterpret_cast<const char*>(&v), 4);
  }
  const uint16_t bf16[2] = {0x3f80, 0x4000};  // 1.0, 2.0
  out.write(reinterpret_cast<const char*>(bf16), 4);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "/tmp/wan_core_tests.safetensors";
  writeFixture(path);
  const std::string before = readAll(path);

  at::Tensor w, b;
  const uint8_t* mapped = nullptr;
  {
    wan::WeightLoader loader(wan::TensorStore::openFile(path), at::kFloat, at::Device(at::kCPU));
    auto entry = loader.store().find("w");
    mapped = entry->file->dataOf(*entry->info);
    w = loader.get("w", {2, 3});
    b = loader.get("b", {2});
    loader.finish();
    check(w.data_ptr() == static_cast<const void*>(mapped), "float32 CPU weight points into the file mapping (zero-copy)");
    check(b.scalar_type() == at::kFloat && b.data_ptr() != static_cast<const void*>(entry->file->dataOf(*loader.store().find("b")->info)),
          "bf16 weight loaded as float32 is a converted copy");
  }
  // The loader and store are gone; the view must still read the file's values.
  check(w.sum().item<float>() == 15.0f && w[1][2].item<float>() == 5.0f, "the view outlives the loader and keeps the mapping alive");
  check(b[0].item<float>() == 1.0f && b[1].item<float>() == 2.0f, "bf16 values converted");

  w.mul_(100);
  check(w[1][2].item<float>() == 500.0f, "the view is writable");
  check(readAll(path) == before, "writing to the view does not change the file on disk");
  {
    auto again = wan::TensorStore::openFile(path);
    at::Tensor fresh = wan::tensorView(*again.find("w"));
    check(fresh[1][2].item<float>() == 5.0f, "another open of the file sees the original values");
  }

  // Missing, mis-shaped and unused tensors are ERR_WAN_BAD_CHECKPOINT naming the tensor.
  auto expectBad = [](const std::function<void()>& fn, const std::string& needle, const std::string& what) {
    try {
      fn();
      check(false, what + " (no error)");
    } catch (const wan::WanError& e) {
      check(e.code() == wan::ErrorCode::BadCheckpoint && std::string(e.what()).find(needle) != std::string::npos, what + ": " + e.what());
    }
  };
  expectBad([&] { wan::WeightLoader l(wan::TensorStore::openFile(path), at::kFloat, at::Device(at::kCPU)); l.get("missing", {1}); }, "'missing'", "missing tensor");
  expectBad([&] { wan::WeightLoader l(wan::TensorStore::openFile(path), at::kFloat, at::Device(at::kCPU)); l.get("w", {3, 2}); }, "'w' has shape [2, 3], expected [3, 2]", "mis-shaped tensor");
  expectBad([&] { wan::WeightLoader l(wan::TensorStore::openFile(path), at::kFloat, at::Device(at::kCPU)); l.get("w", {2, 3}); l.finish(); }, "unexpected tensor 'b'", "unused tensor");

  // describeTensors only opens folders it has checked; the store checks again for C++ callers.
  expectBad([&] { wan::TensorStore::openFolder(path + ".missing-folder"); }, "missing-folder is not a folder", "opening a missing folder");
  // Loading checks for cancellation before each tensor: an A14B expert's dtype conversion or pinned
  // copy takes minutes, and an abort must land within one tensor, not after the component.
  {
    std::atomic<bool> cancel{false};
    const wan::RunContext ctx({}, &cancel);
    wan::WeightLoader loader(wan::TensorStore::openFile(path), at::kFloat, at::Device(at::kCPU), &ctx);
    loader.get("w", {2, 3});
    cancel = true;
    bool aborted = false;
    try {
      loader.get("b", {2});
    } catch (const wan::WanError& e) {
      aborted = e.code() == wan::ErrorCode::Aborted;
    }
    check(aborted, "WeightLoader cancelled after one tensor throws ERR_WAN_ABORTED at the next");
  }
  if (argc > 2) {
    // A component load hands its context to the loader (argv[2]: the tiny model's VAE config.json).
    std::string vaeDir = argv[2];
    vaeDir = vaeDir.substr(0, vaeDir.find_last_of('/'));
    std::atomic<bool> cancel{true};
    const wan::RunContext ctx({}, &cancel);
    bool aborted = false;
    try {
      wan::WanVae::load(vaeDir, at::kFloat, at::Device(at::kCPU), &ctx);
    } catch (const wan::WanError& e) {
      aborted = e.code() == wan::ErrorCode::Aborted;
    }
    check(aborted, "WanVae::load with a cancelled context throws ERR_WAN_ABORTED");
  }

  // The attention fallback (libtorch 1.x) checks for cancellation between query blocks: a large
  // grid spends minutes in one call on a CPU, and an abort must land within a block.
  {
    std::atomic<bool> cancel{true};
    const wan::RunContext ctx({}, &cancel);
    const at::Tensor q = at::randn({1, 2, 8, 4});
    bool aborted = false;
    try {
      wan::chunkedAttention(q, q, q, /*queryChunk=*/2, &ctx);
    } catch (const wan::WanError& e) {
      aborted = e.code() == wan::ErrorCode::Aborted;
    }
    check(aborted, "chunkedAttention with a cancelled context throws ERR_WAN_ABORTED");
    cancel = false;
    const at::Tensor whole = wan::chunkedAttention(q, q, q, /*queryChunk=*/8);
    check(at::equal(wan::chunkedAttention(q, q, q, /*queryChunk=*/2, &ctx), whole), "chunkedAttention not cancelled: the same values in blocks");
  }

  // The VAE's decoder checks for cancellation between its blocks (argv[2]: a VAE config.json; the
  // weights are random, only the control flow matters).
  if (argc > 2) {
    const wan::VaeConfig config = wan::readVaeConfig(argv[2]);
    wan::RandomWeights random(1, at::kFloat, at::Device(at::kCPU));
    const wan::vae::Decoder3d decoder(random, config);
    const at::Tensor z = at::zeros({1, config.zDim, 1, 4, 4});
    std::atomic<bool> cancel{true};
    const wan::RunContext ctx({}, &cancel);
    bool aborted = false;
    try {
      wan::vae::CausalCache cache;
      decoder.forward(z, cache, /*firstChunk=*/true, &ctx);
    } catch (const wan::WanError& e) {
      aborted = e.code() == wan::ErrorCode::Aborted;
    }
    check(aborted, "the VAE decoder with a cancelled context throws ERR_WAN_ABORTED between its blocks");
    cancel = false;
    wan::vae::CausalCache cache;
    check(decoder.forward(z, cache, /*firstChunk=*/true, &ctx).dim() == 5, "the VAE decoder not cancelled decodes");

    const wan::vae::Encoder3d encoder(random, config);
    cancel = true;
    aborted = false;
    try {
      wan::vae::CausalCache encodeCache;
      encoder.forward(at::zeros({1, config.inChannels, 1, 16, 16}), encodeCache, &ctx);
    } catch (const wan::WanError& e) {
      aborted = e.code() == wan::ErrorCode::Aborted;
    }
    check(aborted, "the VAE encoder with a cancelled context throws ERR_WAN_ABORTED between its blocks");
  }

  std::remove(path.c_str());
  std::cout << (failures ? "FAILED " : "passed ") << failures << " failure(s)\n";
  return failures ? 1 : 0;
}
