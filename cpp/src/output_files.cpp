#include "output_files.h"

#include "emaseg/emaseg.h"

#include <opencv2/imgcodecs.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace emaseg::detail {
namespace {

namespace fs = std::filesystem;

Error write_error(const std::string& path, int error) {
  return Error(Error::Kind::kOutput, "cannot write '" + path + "': " + std::strerror(error));
}

fs::path folder_of(const std::string& path) {
  const fs::path folder = fs::path(path).parent_path();
  return folder.empty() ? fs::path(".") : folder;
}

mode_t file_mode() {  // what open(..., 0666) would give: the umask applied
  static std::mutex mutex;
  const std::lock_guard<std::mutex> lock(mutex);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return 0666 & ~mask;
}

// The rename is durable only once the folder's entry is on disk too; failure here is harmless.
void sync_folder(const fs::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

bool write_all(int fd, const unsigned char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // a write that makes no progress: the disk is full
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::string make_temp_beside(const std::string& path) {
  const fs::path target(path);
  const std::string ext = target.extension().string();
  const std::string suffix = ".tmp" + ext;
  std::string name =
      (folder_of(path) / ("." + target.filename().string() + ".XXXXXX" + suffix)).string();
  const int fd = ::mkstemps(name.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw write_error(path, errno);
  ::close(fd);
  return name;
}

void publish(const std::string& temp, const std::string& path) {
  if (::chmod(temp.c_str(), file_mode()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    throw write_error(path, error);
  }
  sync_folder(folder_of(path));
}

void write_file_atomic(const std::string& path, const std::vector<unsigned char>& bytes) {
  const std::string temp = make_temp_beside(path);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  bool ok = fd >= 0 && write_all(fd, bytes.data(), bytes.size()) && ::fsync(fd) == 0;
  int error = errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    ::unlink(temp.c_str());
    throw write_error(path, error);
  }
  publish(temp, path);
}

void write_image_atomic(const std::string& path, const cv::Mat& image) {
  std::vector<unsigned char> bytes;
  bool encoded = false;
  try {
    encoded = cv::imencode(fs::path(path).extension().string(), image, bytes);
  } catch (const cv::Exception&) {
  }
  if (!encoded || bytes.empty())
    throw Error(Error::Kind::kOutput, "cannot encode '" + path + "' (is " +
                                          fs::path(path).extension().string() +
                                          " an image format OpenCV can write?)");
  write_file_atomic(path, bytes);
}

std::string local_file(const std::string& path_or_url) {
  // As FFmpeg's file protocol reads it: what follows "file:" is the path, taken literally
  // ("file:///a/b" is "///a/b", the same file as "/a/b"; no percent-decoding).
  if (path_or_url.rfind("file:", 0) == 0) return path_or_url.substr(5);
  if (path_or_url.find("://") != std::string::npos) return {};
  return path_or_url;
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return !a.empty() && !b.empty() && fs::exists(a, ec) && fs::exists(b, ec) &&
         fs::equivalent(a, b, ec);
}

bool disk_full(const std::string& path) {
  struct statvfs info {};
  if (::statvfs(folder_of(path).c_str(), &info) != 0) return false;
  // root may use the blocks reserved for it; everybody else only the available ones
  const auto free_blocks = ::geteuid() == 0 ? info.f_bfree : info.f_bavail;
  return free_blocks == 0;
}

std::string partial_name(const std::string& path) {
  const fs::path p(path);
  return (p.parent_path() / (p.stem().string() + ".partial" + p.extension().string())).string();
}

fs::file_status input_status(const std::string& path, const std::string& description) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    throw Error(Error::Kind::kInput, "cannot open " + description + ": " + ec.message());
  if (!fs::exists(status)) throw Error(Error::Kind::kInput, description + " does not exist");
  return status;
}

}  // namespace emaseg::detail
