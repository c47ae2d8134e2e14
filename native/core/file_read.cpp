#include "core/file_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/errors.h"

namespace wan {

std::string readSmallFile(const std::string& path, size_t maxBytes, const std::string& what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwBadCheckpoint("cannot open " + what + " " + path + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) throwBadCheckpoint(what + " " + path + " is not a regular file");
  if (static_cast<unsigned long long>(st.st_size) > maxBytes)
    throwBadCheckpoint(what + " " + path + " has " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(maxBytes) +
                       " such a file can have");
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throwBadCheckpoint("cannot read " + what + " " + path + ": " + std::strerror(errno));
    if (n == 0) break;  // shrank while reading: parse what is there
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

}  // namespace wan
