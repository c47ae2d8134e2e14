// Small helpers shared by the C++ tools (wan_bench, wan_run): argument parsing, device sync and
// peak memory, a one-line JSON writer, safetensors output. Header-only: CMake turns every
// native/tools/*.cpp into its own executable.
#pragma once
#include <ATen/ATen.h>
#include <torch/version.h>

#ifdef WAN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace wan::tools {

// --name value pairs and bare --flags after an optional leading command word.
class Args {
 public:
  Args(int argc, char** argv, const std::vector<std::string>& flagNames) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) {
        if (i == 1) {
          command_ = a;
          continue;
        }
        throw std::invalid_argument("unexpected argument '" + a + "'");
      }
      a = a.substr(2);
      const auto eq = a.find('=');
      if (eq != std::string::npos) {
        named_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (std::find(flagNames.begin(), flagNames.end(), a) != flagNames.end()) {
        named_[a] = "1";
      } else {
        if (i + 1 >= argc) throw std::invalid_argument("--" + a + " needs a value");
        named_[a] = argv[++i];
      }
    }
  }
  const std::string& command() const { return command_; }
  bool has(const std::string& name) const { return named_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = named_.find(name);
    return it == named_.end() ? fallback : it->second;
  }
  int64_t integer(const std::string& name, int64_t fallback) const {
    return has(name) ? std::stoll(get(name)) : fallback;
  }
  double number(const std::string& name, double fallback) const { return has(name) ? std::stod(get(name)) : fallback; }
  std::string required(const std::string& name) const {
    if (!has(name)) throw std::invalid_argument("--" + name + " is required");
    return get(name);
  }

 private:
  std::string command_;
  std::map<std::string, std::string> named_;
};

inline void synchronize(const at::Device& device) {
#ifdef WAN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

// Peak memory since the last reset: the CUDA caching allocator's reserved and allocated peaks on
// CUDA; on the CPU the process's resident high-water mark (VmHWM, reset through
// /proc/self/clear_refs where the kernel allows it, else the process lifetime peak).
struct PeakMemory {
  int64_t bytes = 0;           // reserved (CUDA) or RSS high-water mark (CPU)
  int64_t allocatedBytes = 0;  // CUDA only: peak of live tensors
  std::string kind;            // "cuda_reserved" | "rss_hwm" | "rss_hwm_process"
};

inline int64_t readVmHwmBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  123 kB"
  }
  return 0;
}

class PeakMemoryMeter {
 public:
  explicit PeakMemoryMeter(at::Device device) : device_(device) {}
  void reset() {
#ifdef WAN_WITH_CUDA
    if (device_.is_cuda()) {
      // Cached blocks of earlier components would count as reserved: hand them back first.
      c10::cuda::CUDACachingAllocator::emptyCache();
      c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index() < 0 ? 0 : device_.index());
      return;
    }
#endif
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
    clear.close();
    resetWorked_ = !clear.fail();
  }
  PeakMemory read() const {
    PeakMemory p;
#ifdef WAN_WITH_CUDA
    if (device_.is_cuda()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index() < 0 ? 0 : device_.index());
      p.bytes = stats.reserved_bytes[0].peak;  // index 0: the aggregate over pool types
      p.allocatedBytes = stats.allocated_bytes[0].peak;
      p.kind = "cuda_reserved";
      return p;
    }
#endif
    p.bytes = readVmHwmBytes();
    p.kind = resetWorked_ ? "rss_hwm" : "rss_hwm_process";
    return p;
  }

 private:
  at::Device device_;
  bool resetWorked_ = false;
};

// Seconds per call: `warmup` untimed calls, then `iters` timed ones (device synchronized around each).
struct Timing {
  double mean = 0, min = 0;
  int iters = 0;
};

template <typename Fn>
Timing timeCalls(const at::Device& device, int warmup, int iters, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(device);
  Timing t;
  t.iters = iters;
  t.min = 1e300;
  double total = 0;
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total += s;
    t.min = std::min(t.min, s);
  }
  t.mean = iters > 0 ? total / iters : 0;
  if (iters == 0) t.min = 0;
  return t;
}

// One JSON object written as a single line; non-finite numbers become null.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, double v) {
    if (!std::isfinite(v)) return raw(key, "null");
    std::ostringstream o;
    o.precision(6);
    o << v;
    return raw(key, o.str());
  }
  JsonObject& add(const std::string& key, int64_t v) { return raw(key, std::to_string(v)); }
  JsonObject& add(const std::string& key, int v) { return raw(key, std::to_string(v)); }
  JsonObject& add(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  JsonObject& add(const std::string& key, const std::string& v) { return raw(key, quote(v)); }
  JsonObject& add(const std::string& key, const char* v) { return raw(key, quote(v)); }
  JsonObject& add(const std::string& key, const JsonObject& v) { return raw(key, v.str()); }
  JsonObject& addNull(const std::string& key) { return raw(key, "null"); }
  std::string str() const { return "{" + body_ + "}"; }

  static std::string quote(const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') q += '\\', q += c;
      else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        q += buf;
      } else q += c;
    }
    return q + "\"";
  }

 private:
  JsonObject& raw(const std::string& key, const std::string& value) {
    if (!body_.empty()) body_ += ",";
    body_ += quote(key) + ":" + value;
    return *this;
  }
  std::string body_;
};

// Writes float32 / float64 / bfloat16 / float16 / int64 CPU copies of `tensors` as one safetensors file.
inline void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<at::Tensor> data;
  std::string header = "{";
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor t = tensors[i].second.detach().to(at::kCPU).contiguous();
    const char* dtype = nullptr;
    switch (t.scalar_type()) {
      case at::kFloat: dtype = "F32"; break;
      case at::kDouble: dtype = "F64"; break;
      case at::kBFloat16: dtype = "BF16"; break;
      case at::kHalf: dtype = "F16"; break;
      case at::kLong: dtype = "I64"; break;
      default: throw std::invalid_argument("writeSafetensors: unsupported dtype for " + tensors[i].first);
    }
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    std::string shape;
    for (int64_t d = 0; d < t.dim(); ++d) shape += (d ? "," : "") + std::to_string(t.size(d));
    header += (i ? "," : "") + JsonObject::quote(tensors[i].first) + ":{\"dtype\":\"" + dtype + "\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    data.push_back(t);
  }
  header += "}";
  while (header.size() % 8) header += ' ';  // data section 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);  // little-endian hosts only (x86-64, aarch64)
  out.write(header.data(), static_cast<std::streamsize>(n));
  for (const auto& t : data) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  if (!out) throw std::runtime_error("could not write " + path);
}

inline std::string torchVersion() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace wan::tools
