#include "json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "errors.h"
#include "file_read.h"

namespace wan::json {

const Value* Value::find(const std::string& key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

std::optional<uint64_t> Value::asUint64() const {
  if (type != Type::Number || text.empty() || text.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<int64_t> Value::asInt64() const {
  if (type != Type::Number || text.empty()) return std::nullopt;
  bool neg = text[0] == '-';
  Value abs = *this;
  if (neg) abs.text = text.substr(1);
  auto u = abs.asUint64();
  if (!u) return std::nullopt;
  if (!neg && *u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  if (neg && *u > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
  return neg ? static_cast<int64_t>(0 - *u) : static_cast<int64_t>(*u);
}

std::string typeName(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

namespace {

class Parser {
 public:
  Parser(const char* data, size_t size, int maxDepth, size_t maxValues)
      : p_(data), begin_(data), end_(data + size), maxDepth_(maxDepth), maxValues_(maxValues) {}

  bool parseDocument(Value& out) {
    skipWs();
    if (!parseValue(out, 0)) return false;
    skipWs();
    if (p_ != end_) return fail("unexpected characters after the JSON value");
    return true;
  }

  ParseError error;

 private:
  const char* p_;
  const char* begin_;
  const char* end_;
  int maxDepth_;
  size_t maxValues_;
  size_t values_ = 0;

  bool fail(const std::string& msg) {
    error.message = msg;
    error.offset = static_cast<size_t>(p_ - begin_);
    return false;
  }

  void skipWs() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  bool literal(const char* word) {
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return fail("invalid literal");
    p_ += n;
    return true;
  }

  bool parseValue(Value& out, int depth) {
    if (depth > maxDepth_) return fail("JSON nested too deeply");
    if (++values_ > maxValues_) return fail("JSON holds more than " + std::to_string(maxValues_) + " values");
    if (p_ >= end_) return fail("unexpected end of JSON");
    switch (*p_) {
      case '{': return parseObject(out, depth);
      case '[': return parseArray(out, depth);
      case '"': out.type = Type::String; return parseString(out.text);
      case 't': out.type = Type::Bool; out.boolean = true; return literal("true");
      case 'f': out.type = Type::Bool; out.boolean = false; return literal("false");
      case 'n': out.type = Type::Null; return literal("null");
      default: return parseNumber(out);
    }
  }

  bool parseObject(Value& out, int depth) {
    out.type = Type::Object;
    ++p_;
    skipWs();
    if (p_ < end_ && *p_ == '}') { ++p_; return true; }
    while (true) {
      skipWs();
      if (p_ >= end_ || *p_ != '"') return fail("expected a string key");
      std::string key;
      if (!parseString(key)) return false;
      skipWs();
      if (p_ >= end_ || *p_ != ':') return fail("expected ':'");
      ++p_;
      skipWs();
      out.members.emplace_back(std::move(key), Value());
      if (!parseValue(out.members.back().second, depth + 1)) return false;
      skipWs();
      if (p_ >= end_) return fail("unexpected end of JSON in object");
      if (*p_ == ',') { ++p_; continue; }
      if (*p_ == '}') { ++p_; return true; }
      return fail("expected ',' or '}'");
    }
  }

  bool parseArray(Value& out, int depth) {
    out.type = Type::Array;
    ++p_;
    skipWs();
    if (p_ < end_ && *p_ == ']') { ++p_; return true; }
    while (true) {
      skipWs();
      out.items.emplace_back();
      if (!parseValue(out.items.back(), depth + 1)) return false;
      skipWs();
      if (p_ >= end_) return fail("unexpected end of JSON in array");
      if (*p_ == ',') { ++p_; continue; }
      if (*p_ == ']') { ++p_; return true; }
      return fail("expected ',' or ']'");
    }
  }

  static void appendUtf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool hex4(uint32_t& v) {
    if (end_ - p_ < 4) return fail("truncated \\u escape");
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else return fail("invalid \\u escape");
    }
    return true;
  }

  bool parseString(std::string& out) {
    ++p_;  // opening quote
    out.clear();
    while (true) {
      if (p_ >= end_) return fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') { ++p_; return true; }
      if (c < 0x20) return fail("control character in string");
      if (c != '\\') { out += static_cast<char>(c); ++p_; continue; }
      ++p_;
      if (p_ >= end_) return fail("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
              p_ += 2;
              uint32_t lo;
              if (!hex4(lo)) return false;
              if (lo < 0xDC00 || lo > 0xDFFF) return fail("invalid surrogate pair");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              return fail("lone surrogate");
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail("lone surrogate");
          }
          appendUtf8(out, cp);
          break;
        }
        default: return fail("invalid escape");
      }
    }
  }

  bool parseNumber(Value& out) {
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ >= end_) return fail("invalid number");
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    } else {
      return fail("unexpected character");
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (p_ >= end_ || !(*p_ >= '0' && *p_ <= '9')) return fail("invalid number");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ >= end_ || !(*p_ >= '0' && *p_ <= '9')) return fail("invalid number");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    out.type = Type::Number;
    out.text.assign(start, p_);
    if (out.text.size() > 400) return fail("number too long");
    out.number = std::strtod(out.text.c_str(), nullptr);
    return true;
  }
};

}  // namespace

std::optional<Value> parse(const char* data, size_t size, ParseError* error, int maxDepth, size_t maxValues) {
  Parser parser(data, size, maxDepth, maxValues);
  Value v;
  if (!parser.parseDocument(v)) {
    if (error) *error = parser.error;
    return std::nullopt;
  }
  return v;
}

Value parseFile(const std::string& path, size_t maxBytes, size_t maxValues) {
  const std::string text = readSmallFile(path, maxBytes, "JSON file");
  ParseError err;
  auto v = parse(text.data(), text.size(), &err, 64, maxValues);
  if (!v) throwBadCheckpoint(path + " is not valid JSON: " + err.message + " at byte " + std::to_string(err.offset));
  return std::move(*v);
}

}  // namespace wan::json
