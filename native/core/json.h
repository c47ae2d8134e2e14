// A small strict JSON reader for model configs and safetensors headers. It is ours (not a
// dependency) so the same code builds on the GPU machine, which has no package manager, and so
// that its limits on hostile input (depth, size, duplicate keys) are under our control and fuzzed.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wan::json {

enum class Type { Null, Bool, Number, String, Array, Object };

class Value {
 public:
  Type type = Type::Null;
  bool boolean = false;
  double number = 0;
  std::string text;  // the string value, or the literal text of a number
  std::vector<Value> items;                            // Array
  std::vector<std::pair<std::string, Value>> members;  // Object, in file order, duplicates kept

  bool isNull() const { return type == Type::Null; }
  bool isObject() const { return type == Type::Object; }
  bool isArray() const { return type == Type::Array; }
  bool isString() const { return type == Type::String; }
  bool isNumber() const { return type == Type::Number; }
  bool isBool() const { return type == Type::Bool; }

  // First member with this key, or nullptr.
  const Value* find(const std::string& key) const;
  // A number that is a non-negative integer written without fraction or exponent, or nullopt.
  std::optional<uint64_t> asUint64() const;
  std::optional<int64_t> asInt64() const;
};

struct ParseError {
  std::string message;
  size_t offset = 0;
};

// Parses one JSON document (RFC 8259; surrounding whitespace allowed). Returns nullopt and
// fills `error` on any syntax error, when nesting exceeds `maxDepth`, or when the document holds
// more than `maxValues` values (each costs ~100 bytes in memory: a hostile "[0,0,0,..." header
// would otherwise cost 50x its size).
std::optional<Value> parse(const char* data, size_t size, ParseError* error, int maxDepth = 64, size_t maxValues = SIZE_MAX);

// The most values a JSON file may hold (the bound a safetensors header has): a real config holds
// tens, a sharded checkpoint's index a few thousand.
constexpr size_t kMaxFileValues = size_t{1} << 20;

// Reads and parses a whole file of at most `maxBytes` bytes and `maxValues` values; throws
// WanError(BadCheckpoint) naming the file on failure.
Value parseFile(const std::string& path, size_t maxBytes, size_t maxValues = kMaxFileValues);

std::string typeName(Type t);

}  // namespace wan::json
