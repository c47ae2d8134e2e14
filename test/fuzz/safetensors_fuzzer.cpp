// libFuzzer harness for the safetensors header parser (native/core/safetensors.cpp) and the JSON
// reader under it. Built without libtorch by test/fuzz/run.sh. The input is a whole file image
// (8-byte length, JSON header, data); a hostile image must end in a WanError, never a crash,
// an out-of-bounds read (ASan) or undefined behaviour (UBSan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/errors.h"
#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    uint64_t dataOffset = 0;
    wan::SafetensorsHeader h = wan::parseSafetensorsImage(data, size, "fuzz-input", &dataOffset);
    // Whatever the parser accepts must lie inside the image: check the promises callers rely on.
    if (dataOffset > size) std::abort();
    const uint64_t dataSize = size - dataOffset;
    for (const auto& t : h.tensors) {
      if (t.begin > t.end || t.end > dataSize) std::abort();
      if (t.end - t.begin != t.numel() * wan::dtypeSize(t.dtype)) std::abort();
      // Touch the first and last byte of each tensor, as a reader would (ASan checks the bounds).
      if (t.end > t.begin) {
        volatile uint8_t first = data[dataOffset + t.begin];
        volatile uint8_t last = data[dataOffset + t.end - 1];
        (void)first;
        (void)last;
      }
    }
  } catch (const wan::WanError& e) {
    if (e.code() != wan::ErrorCode::BadCheckpoint) std::abort();
  }
  return 0;
}
