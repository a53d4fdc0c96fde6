// Files that appear whole or not at all: every output of the runtime is written under a
// temporary name beside its destination and renamed into place only when complete and checked.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace emaseg::detail {

// A new, empty, hidden file beside `path` (".NAME.XXXXXX.tmpEXT": the extension stays last,
// because encoders and muxers choose the format from it). Throws Error(kOutput).
std::string make_temp_beside(const std::string& path);

// Renames a finished temp file to `path` with the usual permissions (mkstemp makes it 0600).
// Throws Error(kOutput) with the OS reason; the temp file is removed then.
void publish(const std::string& temp, const std::string& path);

// Writes `bytes` to `path` atomically (temp file, fsync, rename). Throws Error(kOutput)
// naming `path` and the OS reason (e.g. "No space left on device"); nothing stays behind.
void write_file_atomic(const std::string& path, const std::vector<unsigned char>& bytes);

// Encodes `image` for the extension of `path` (cv::imencode), then write_file_atomic.
void write_image_atomic(const std::string& path, const cv::Mat& image);

// The local file an input names, for any spelling FFmpeg accepts: "in.mp4", "file:in.mp4",
// "file:///abs/in.mp4". Empty for network URLs.
std::string local_file(const std::string& path_or_url);

// The status of an input path; Error(kInput) naming the OS reason (a symlink loop, a name too
// long, no permission) when it cannot be known, and "<description> does not exist" when it is
// not there.
std::filesystem::file_status input_status(const std::string& path, const std::string& description);

// True if both name one existing file (plain paths, symlinks and hard links alike).
bool same_file(const std::string& a, const std::string& b);

// True when the file system holding `path` has no byte left for this process.
bool disk_full(const std::string& path);

// "out.mp4" -> "out.partial.mp4": where an interrupted run's playable video is kept.
std::string partial_name(const std::string& path);

}  // namespace emaseg::detail
