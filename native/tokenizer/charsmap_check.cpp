#include "charsmap_check.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

#include "core/errors.h"

namespace wan {

namespace {

// Field numbers of sentencepiece_model.proto.
constexpr uint32_t kModelNormalizerSpec = 3;
constexpr uint32_t kModelDenormalizerSpec = 5;
constexpr uint32_t kNormalizerPrecompiledCharsmap = 2;

// Real tries have a few hundred KB (nmt_nfkc); the walk costs 256 steps per node, so bound it.
constexpr size_t kMaxTrieBytes = size_t{16} << 20;

bool readVarint(std::string_view& in, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

// Calls `fn` with each length-delimited field of a protobuf message, in order; false when the
// message cannot be walked (truncated, or a group, which these models never hold).
bool forEachBytesField(std::string_view message, const std::function<void(uint32_t, std::string_view)>& fn) {
  while (!message.empty()) {
    uint64_t key, n;
    if (!readVarint(message, &key)) return false;
    switch (key & 7) {
      case 0:
        if (!readVarint(message, &n)) return false;
        break;
      case 1:
      case 5: {
        const size_t width = (key & 7) == 1 ? 8 : 4;
        if (message.size() < width) return false;
        message.remove_prefix(width);
        break;
      }
      case 2:
        if (!readVarint(message, &n) || n > message.size()) return false;
        fn(static_cast<uint32_t>(key >> 3), message.substr(0, n));
        message.remove_prefix(n);
        break;
      default:
        return false;
    }
  }
  return true;
}

// darts-clone's unit: bit 8 has_leaf; a leaf's value in bits 0-30; label = bits 0-7 plus the
// MSB (set on leaves, so no byte matches them); offset = bits 10-31, shifted left by 8 when bit 9.
uint32_t label(uint32_t unit) { return unit & (0x80000000u | 0xffu); }
bool hasLeaf(uint32_t unit) { return (unit >> 8) & 1; }
uint32_t value(uint32_t unit) { return unit & 0x7fffffffu; }
uint32_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

// What is wrong with one charsmap, or "" when every lookup stays inside it.
std::string charsmapProblem(std::string_view blob) {
  if (blob.size() <= 4) return "it is too short";
  uint32_t trieBytes;
  std::memcpy(&trieBytes, blob.data(), 4);  // little-endian, as the library reads it on x86 and ARM
  if (trieBytes > blob.size() - 4) return "its trie size " + std::to_string(trieBytes) + " runs past its end";
  if (trieBytes > kMaxTrieBytes) return "its trie has " + std::to_string(trieBytes) + " bytes, more than a real one";
  const size_t count = trieBytes / 4;  // the library ignores a partial last unit
  if (count == 0) return "its trie is empty";
  std::vector<uint32_t> units(count);
  std::memcpy(units.data(), blob.data() + 4, count * 4);
  const std::string_view text = blob.substr(4 + size_t{trieBytes});

  // The lookup (commonPrefixSearch) goes from node n to base = n ^ offset(n), reads base ^ c for an
  // input byte c (any of 256), and follows it when its label is c; a node with has_leaf reads its
  // value at base, the start of a NUL-terminated string in `text`.
  std::vector<bool> seen(count);
  std::vector<size_t> pending{0};
  seen[0] = true;
  while (!pending.empty()) {
    const size_t node = pending.back();
    pending.pop_back();
    const size_t base = node ^ offset(units[node]);
    if ((base | 0xff) >= count) return "trie node " + std::to_string(node) + " leads outside the trie";
    if (hasLeaf(units[node])) {
      const size_t at = value(units[base]);
      if (at >= text.size() || text.find('\0', at) == std::string_view::npos)
        return "trie node " + std::to_string(node) + " points outside its replacement strings";
    }
    for (uint32_t c = 0; c < 256; ++c) {
      const size_t child = base ^ c;
      if (label(units[child]) == c && !seen[child]) {
        seen[child] = true;
        pending.push_back(child);
      }
    }
  }
  return "";
}

}  // namespace

void checkPrecompiledCharsmaps(const std::string& model, const std::string& path) {
  // Every occurrence is checked: protobuf merges repeated singular fields, so the library uses
  // one of them.
  std::string problem;
  auto checkSpec = [&](uint32_t field, std::string_view spec) {
    if (field != kModelNormalizerSpec && field != kModelDenormalizerSpec) return;
    const bool walked = forEachBytesField(spec, [&](uint32_t inner, std::string_view charsmap) {
      if (inner == kNormalizerPrecompiledCharsmap && !charsmap.empty() && problem.empty()) problem = charsmapProblem(charsmap);
    });
    if (!walked && problem.empty()) problem = "its normalizer cannot be read";
  };
  if (!forEachBytesField(model, checkSpec) && problem.empty()) problem = "it cannot be read as a SentencePiece model";
  if (!problem.empty())
    throwBadCheckpoint("tokenizer model " + path + " has a broken normalization rule table (precompiled_charsmap): " + problem);
}

}  // namespace wan
