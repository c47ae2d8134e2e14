// A small LRU of text-encoder outputs keyed by the token ids and mask, so a second generate() with
// the same prompts does not re-encode (the encoder is ~11 GB and slow on the CPU).
#pragma once
#include <ATen/ATen.h>

#include <list>
#include <optional>
#include <string>
#include <utility>

namespace wan {

class PromptCache {
 public:
  explicit PromptCache(size_t capacity = 4) : capacity_(capacity) {}

  static std::string keyOf(const at::Tensor& ids, const at::Tensor& mask) {
    at::Tensor a = ids.to(at::kCPU, at::kLong).contiguous();
    at::Tensor b = mask.to(at::kCPU, at::kLong).contiguous();
    std::string key;
    key.append(reinterpret_cast<const char*>(a.data_ptr()), a.numel() * sizeof(int64_t));
    key.append(reinterpret_cast<const char*>(b.data_ptr()), b.numel() * sizeof(int64_t));
    key += ":" + std::to_string(a.size(0));
    return key;
  }

  std::optional<at::Tensor> get(const std::string& key) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.splice(entries_.begin(), entries_, it);  // most recent first
        return it->second;
      }
    return std::nullopt;
  }

  void put(const std::string& key, const at::Tensor& value) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.erase(it);
        break;
      }
    entries_.emplace_front(key, value);
    while (entries_.size() > capacity_) entries_.pop_back();
  }

  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  size_t capacity_;
  std::list<std::pair<std::string, at::Tensor>> entries_;
};

}  // namespace wan
