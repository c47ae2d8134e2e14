#include "sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "core/errors.h"

namespace wan {

SentencePieceTokenizer::SentencePieceTokenizer() : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  // Read the bytes ourselves: a clear message for a missing file, and no path handling inside
  // the library.
  std::ifstream in(path, std::ios::binary);
  if (!in) throwBadCheckpoint("tokenizer model " + path + " is missing or unreadable (expected a SentencePiece spiece.model)");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) throwBadCheckpoint("tokenizer model " + path + " could not be read");
  std::unique_ptr<SentencePieceTokenizer> tokenizer(new SentencePieceTokenizer());
  auto status = tokenizer->processor_->LoadFromSerializedProto(bytes.str());
  if (!status.ok()) throwBadCheckpoint("tokenizer model " + path + " is not a valid SentencePiece model: " + status.ToString());
  if (tokenizer->processor_->GetPieceSize() <= 0) throwBadCheckpoint("tokenizer model " + path + " has an empty vocabulary");
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
