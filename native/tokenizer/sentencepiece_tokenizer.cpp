#include "sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "charsmap_check.h"
#include "core/errors.h"
#include "core/file_read.h"

namespace wan {

namespace {
constexpr size_t kMaxTokenizerModelBytes = size_t{256} << 20;
}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer() : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  // Read the bytes ourselves: a clear message for a missing, special or oversized file (umt5's
  // spiece.model has 4.5 MB), and no path handling inside the library.
  const std::string bytes = readSmallFile(path, kMaxTokenizerModelBytes, "tokenizer model (a SentencePiece spiece.model)");
  std::unique_ptr<SentencePieceTokenizer> tokenizer(new SentencePieceTokenizer());
  auto status = tokenizer->processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) throwBadCheckpoint("tokenizer model " + path + " is not a valid SentencePiece model: " + status.ToString());
  if (tokenizer->processor_->GetPieceSize() <= 0) throwBadCheckpoint("tokenizer model " + path + " has an empty vocabulary");
  // The library loaded the normalizer's tables without checking them; it reads them at encode.
  checkPrecompiledCharsmaps(bytes, path);
  return tokenizer;
}

std::vector<int> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto status = processor_->Encode(text, &ids);
  if (!status.ok()) throwBadArgument("cannot tokenize the prompt: " + status.ToString());
  return ids;
}

int SentencePieceTokenizer::vocabSize() const { return processor_->GetPieceSize(); }

}  // namespace wan
