// Reading a small checkpoint file (a JSON config, a tokenizer model) whole, safely: a hostile
// folder may put a FIFO, a device or a huge file where one is expected.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace wan {

// Opens the regular file `path` for reading and returns its descriptor (the caller closes it), its
// size in `*size`. Opening does not block on a FIFO. Throws ERR_WAN_BAD_CHECKPOINT, the message
// naming the file as `name`, when it cannot be opened or is not a regular file.
int openRegularFile(const std::string& path, const std::string& name, uint64_t* size);

// The bytes of the regular file `path`, at most `maxBytes` of them. Throws ERR_WAN_BAD_CHECKPOINT,
// naming `what` and the path, when it cannot be opened, is not a regular file (opening does not
// block on a FIFO) or is larger than `maxBytes`.
std::string readSmallFile(const std::string& path, size_t maxBytes, const std::string& what);

}  // namespace wan
