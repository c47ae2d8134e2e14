#!/bin/sh
# Assembles the bundled tiny demo model (models/tiny): the t2v-a14b-tiny fixture family (random
# weights in the real Diffusers layout; cases left out) plus a real tiny SentencePiece tokenizer,
# so `wan-video generate` without --model goes through the same code path as real weights.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../test/fixtures/wan-tiny/t2v-a14b-tiny"
out="$here/../models/tiny"
mkdir -p "$out"
for part in model_index.json scheduler text_encoder transformer transformer_2 vae; do
  rm -rf "${out:?}/$part"
  cp -r "$src/$part" "$out/$part"
done
sh "$here/make-tiny-tokenizer.sh"
