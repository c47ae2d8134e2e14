#!/bin/sh
# Trains the tiny SentencePiece tokenizer bundled with the tiny demo model: a real unigram model
# with T5's special ids (pad 0, EOS 1, unk 2, no BOS) and the tiny text encoder's vocabulary (256),
# from the small multilingual text beside this script. Needs Debian's sentencepiece (spm_train).
# Writes models/tiny/tokenizer/{spiece.model, tokenizer_config.json, special_tokens_map.json}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../models/tiny/tokenizer"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One thread, a fixed seed and relative paths (the model records its trainer options): the same
# corpus gives the same bytes. Identity normalization keeps the file a few KB (T5's NFKC table
# alone is ~240 KB); the corpus holds every character the demo prompts need.
cp "$here/tiny-tokenizer-corpus.txt" "$tmp/corpus.txt"
cd "$tmp"
spm_train --input=corpus.txt --model_prefix=spiece \
  --vocab_size=256 --model_type=unigram --character_coverage=1.0 --normalization_rule_name=identity \
  --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 \
  --pad_piece='<pad>' --eos_piece='</s>' --unk_piece='<unk>' \
  --num_threads=1 --random_seed=42 --minloglevel=2
cp "$tmp/spiece.model" "$out/spiece.model"

cat >"$out/special_tokens_map.json" <<'JSON'
{
  "eos_token": "</s>",
  "pad_token": "<pad>",
  "unk_token": "<unk>"
}
JSON
cat >"$out/tokenizer_config.json" <<'JSON'
{
  "tokenizer_class": "T5Tokenizer",
  "model_max_length": 512,
  "eos_token": "</s>",
  "pad_token": "<pad>",
  "unk_token": "<unk>",
  "extra_ids": 0,
  "additional_special_tokens": [],
  "legacy": true
}
JSON
echo "wrote $out"
