// A SentencePiece model (the Diffusers `tokenizer/spiece.model`) turning cleaned prompt text into
// token ids. Lives in the separate tokenizer addon (see tokenizer_addon.cpp for why): it must not
// include libtorch headers.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace wan {

class SentencePieceTokenizer {
 public:
  // Throws WanError(BadCheckpoint) naming `path` when the file is missing, unreadable or not a
  // SentencePiece model.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path);
  ~SentencePieceTokenizer();

  // Ids of `text` (UTF-8) as the model segments it: no EOS, padding or truncation.
  std::vector<int> encode(const std::string& text) const;
  int vocabSize() const;

 private:
  SentencePieceTokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace wan
