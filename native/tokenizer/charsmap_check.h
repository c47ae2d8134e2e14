// Checks the normalization rules of a SentencePiece model before the library uses them.
//
// A model carries its normalizer as `precompiled_charsmap`: a uint32 trie size, a darts-clone
// double-array trie of that many bytes, then NUL-terminated replacement strings that the trie's
// values point into. SentencePiece 0.1.97 (Debian's) trusts all of it: a hostile trie or value
// makes the first encode read outside the model (SIGSEGV). This walks every trie node an input
// can reach, the way the library's lookup does, and requires each read to stay inside the model.
#pragma once
#include <string>

namespace wan {

// Throws ERR_WAN_BAD_CHECKPOINT naming `path` unless every precompiled_charsmap of the serialized
// ModelProto `model` (its normalizer_spec and denormalizer_spec) is safe to look up.
void checkPrecompiledCharsmaps(const std::string& model, const std::string& path);

}  // namespace wan
