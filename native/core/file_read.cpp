#include "core/file_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/errors.h"

namespace wan {

int openRegularFile(const std::string& path, const std::string& name, uint64_t* size) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (the S_ISREG
  // check then refuses it); regular files ignore the flag.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throwBadCheckpoint("cannot open " + name + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throwBadCheckpoint(name + " is not a regular file");
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::string readSmallFile(const std::string& path, size_t maxBytes, const std::string& what) {
  const std::string name = what + " " + path;
  uint64_t size = 0;
  const int fd = openRegularFile(path, name, &size);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (size > maxBytes)
    throwBadCheckpoint(name + " has " + std::to_string(size) + " bytes, more than the " + std::to_string(maxBytes) + " such a file can have");
  std::string bytes(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throwBadCheckpoint("cannot read " + name + ": " + std::strerror(errno));
    if (n == 0) break;  // shrank while reading: parse what is there
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

}  // namespace wan
