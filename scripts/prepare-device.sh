#!/usr/bin/env bash
# Prepares the files a GPU session carries to the lent device machine (bench/device/run.sh):
#   .device/node.xz            this machine's node binary (the device has no Node.js)
#   .device/diffusers.tar.gz   diffusers' src/ from a mirror fetched with the search tool's `fetch`
#                              (reference code for parity and the side-by-side benchmark; never committed)
#   .device/napi/              node-api-headers and node-addon-api headers (to build the addon there)
#   .device/dist/lib/          the built TypeScript: bench/device/fixture_parity.mjs runs its parity
#                              runner there (the golden fixtures on the GPU), without node_modules
# .device/ is git-ignored (.gitignore), so name it in the device tool's `carry`.
#
#   scripts/prepare-device.sh /work/.mirror/huggingface+diffusers/repo
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 1 ]]; then
  echo "usage: scripts/prepare-device.sh <diffusers git dir, e.g. /work/.mirror/huggingface+diffusers/repo>" >&2
  exit 2
fi
diffusers_git="$1"
git -C "$diffusers_git" rev-parse --verify -q HEAD >/dev/null || { echo "prepare-device: $diffusers_git is not a git directory" >&2; exit 2; }

mkdir -p .device
git check-ignore -q .device/node.xz || { echo "prepare-device: .device/ must be git-ignored (.gitignore has /.device/)" >&2; exit 1; }

node_bin="$(command -v node)"
if [[ ! -f .device/node.xz || "$node_bin" -nt .device/node.xz ]]; then
  xz -T2 -6 -c "$node_bin" >.device/node.xz.tmp && mv .device/node.xz.tmp .device/node.xz
fi
git -C "$diffusers_git" archive HEAD src/diffusers | gzip -6 >.device/diffusers.tar.gz
echo "diffusers $(git -C "$diffusers_git" rev-parse --short HEAD)" >.device/VERSIONS
echo "node $("$node_bin" --version)" >>.device/VERSIONS

rm -rf .device/napi && mkdir -p .device/napi/node-api-headers .device/napi/node-addon-api
cp -r node_modules/node-api-headers/include .device/napi/node-api-headers/
cp node_modules/node-addon-api/*.h .device/napi/node-addon-api/

node scripts/build-ts.mjs
rm -rf .device/dist && mkdir -p .device/dist && cp -r dist/lib .device/dist/

du -sh .device/* | sed 's/^/prepare-device: /'
total=$(du -sb .device | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "prepare-device: .device $((total / 1048576)) MiB + tracked files $((tree / 1048576)) MiB (the device tool carries 64 MiB in all)"
echo "prepare-device: carry [\".device\"] in the run call"
