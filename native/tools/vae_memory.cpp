// Peak memory of one Wan VAE decode (or encode), for tests and bench/RESULTS.md. One mode per
// process: the peak is the process's RSS high-water mark (VmHWM) after the call minus the RSS before
// it (weights loaded, warm-up done), so it counts every activation, cache and the result buffer.
// On CUDA the caching allocator's peaks are reported too (allocated and reserved).
//
//   vae_memory --vae <vae dir> | --real 2.1|2.2   [--mode decode|encode] [--tiled 0|1]
//              --shape B,C,F,H,W (latents for decode, video for encode) [--dtype float32] [--device cpu]
//              [--tile-size 256 --tile-overlap 64] [--estimate-only 1]
// Prints one JSON line.
#include <ATen/ATen.h>

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "models/wan_vae.h"

#ifdef WAN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

int64_t procStatusBytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::stoll(line.substr(n + 1)) * 1024;
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0).
void resetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

std::vector<int64_t> parseShape(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) out.push_back(std::stoll(part));
  return out;
}

// The real configs (Wan-AI/Wan2.2-*-Diffusers vae/config.json) with unit latent statistics.
wan::VaeConfig realConfig(const std::string& version) {
  wan::VaeConfig c;
  if (version == "2.1") {
    c.baseDim = 96;
    c.decoderBaseDim = 96;
    c.zDim = 16;
    c.patchSize = 1;
    c.scaleFactorSpatial = 8;
    c.inChannels = c.outChannels = 3;
    c.isResidual = false;
  } else if (version == "2.2") {
    c.baseDim = 160;
    c.decoderBaseDim = 256;
    c.zDim = 48;
    c.patchSize = 2;
    c.scaleFactorSpatial = 16;
    c.inChannels = c.outChannels = 12;
    c.isResidual = true;
  } else {
    wan::throwBadArgument("--real must be 2.1 or 2.2");
  }
  c.latentsMean.assign(c.zDim, 0.0);
  c.latentsStd.assign(c.zDim, 1.0);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  // Every allocation above 64 KiB gets its own mapping, returned to the OS when freed: the RSS
  // high-water mark then tracks live bytes instead of glibc's heap growth.
  mallopt(M_MMAP_THRESHOLD, 1 << 16);
  bool estimateOnly = false;
  std::string vaeDir, real, mode = "decode", dtypeName = "float32", deviceName = "cpu", shapeArg;
  bool tiled = false;
  wan::TilingOptions tiling;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--vae") vaeDir = v;
    else if (k == "--real") real = v;
    else if (k == "--mode") mode = v;
    else if (k == "--tiled") tiled = v == "1" || v == "true";
    else if (k == "--shape") shapeArg = v;
    else if (k == "--dtype") dtypeName = v;
    else if (k == "--device") deviceName = v;
    else if (k == "--estimate-only") estimateOnly = v == "1" || v == "true";
    else if (k == "--tile-size") tiling.tileSize = std::stoll(v);
    else if (k == "--tile-overlap") tiling.tileOverlap = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    wan::configureThreads();
    at::Device device = wan::parseDevice(deviceName);
    at::ScalarType dtype = wan::parseDtype(dtypeName);
    std::unique_ptr<wan::WanVae> vae;
    std::unique_ptr<wan::RandomWeights> random;
    if (!vaeDir.empty()) {
      vae = wan::WanVae::load(vaeDir, dtype, device);
    } else {
      random = std::make_unique<wan::RandomWeights>(1234, dtype, device);
      vae = std::make_unique<wan::WanVae>(realConfig(real), *random);
    }
    std::vector<int64_t> shape = parseShape(shapeArg);
    if (shape.size() != 5) wan::throwBadArgument("--shape must be B,C,F,H,W");
    tiling.mode = tiled ? wan::TilingOptions::Mode::On : wan::TilingOptions::Mode::Off;
    if (estimateOnly) {
      auto est = [&](bool t) { return mode == "decode" ? vae->estimateDecodeBytes(shape, t, tiling) : vae->estimateEncodeBytes(shape, t, tiling); };
      wan::TilingOptions automatic = tiling;
      automatic.mode = wan::TilingOptions::Mode::Auto;
      const bool autoTiles = mode == "decode" ? vae->decodeTiles(shape, automatic) : vae->encodeTiles(shape, automatic);
      std::cout << "{\"mode\":\"" << mode << "\",\"version\":\"" << vae->version() << "\",\"dtype\":\"" << dtypeName
                << "\",\"parameterCount\":" << vae->parameterCount() << ",\"estimateUntiledBytes\":" << est(false)
                << ",\"estimateTiledBytes\":" << est(true) << ",\"autoTiles\":" << (autoTiles ? "true" : "false") << "}" << std::endl;
      return 0;
    }
    at::manual_seed(0);
    at::Tensor input = at::randn(shape, at::kFloat);
    if (mode == "encode") input = input.clamp(-1, 1);
    bool tiles = mode == "decode" ? vae->decodeTiles(shape, tiling) : vae->encodeTiles(shape, tiling);
    int64_t estimate = mode == "decode" ? vae->estimateDecodeBytes(shape, tiles, tiling) : vae->estimateEncodeBytes(shape, tiles, tiling);

    // warm-up: thread pools and oneDNN kernels are set up on first use, not part of the peak
    {
      std::vector<int64_t> small = shape;
      small[0] = 1;
      small[2] = 1;
      small[3] = small[4] = mode == "decode" ? 2 : vae->config().scaleFactorSpatial;
      at::Tensor warm = at::zeros(small, at::TensorOptions().dtype(at::kFloat).device(device));
      if (mode == "decode") vae->decode(warm);
      else vae->encode(warm);
    }
    int64_t before = procStatusBytes("VmRSS:");
    resetPeakRss();
#ifdef WAN_WITH_CUDA
    if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
    auto start = std::chrono::steady_clock::now();
    at::Tensor result = mode == "decode" ? vae->decode(input, tiling) : vae->encode(input, tiling).mean;
#ifdef WAN_WITH_CUDA
    if (device.is_cuda()) c10::cuda::device_synchronize();  // the time of the work, not of its queueing
#endif
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int64_t peak = procStatusBytes("VmHWM:");
    int64_t devicePeak = -1, deviceReservedPeak = -1;
#ifdef WAN_WITH_CUDA
    if (device.is_cuda()) {
      auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
      devicePeak = stats.allocated_bytes[0].peak;
      deviceReservedPeak = stats.reserved_bytes[0].peak;  // what the process held from the driver
    }
#endif
    std::ostringstream o;
    o << "{\"mode\":\"" << mode << "\",\"version\":\"" << vae->version() << "\",\"tiled\":" << (tiles ? "true" : "false")
      << ",\"dtype\":\"" << dtypeName << "\",\"device\":\"" << deviceName << "\",\"shape\":[";
    for (size_t i = 0; i < shape.size(); ++i) o << (i ? "," : "") << shape[i];
    o << "],\"outputShape\":[";
    for (int64_t i = 0; i < result.dim(); ++i) o << (i ? "," : "") << result.size(i);
    o << "],\"parameterCount\":" << vae->parameterCount() << ",\"rssBeforeBytes\":" << before << ",\"peakRssBytes\":" << peak
      << ",\"peakExtraBytes\":" << (peak - before) << ",\"devicePeakBytes\":" << devicePeak << ",\"deviceReservedPeakBytes\":" << deviceReservedPeak << ",\"estimateBytes\":" << estimate
      << ",\"seconds\":" << seconds << "}";
    std::cout << o.str() << std::endl;
    return 0;
  } catch (const wan::WanError& e) {
    std::cerr << wan::errorCodeName(e.code()) << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
