// Ctrl-C and SIGTERM: the first asks the pipeline to stop (it finishes the frames in flight and
// keeps a partial video); a second quits at once, removing the temporary files first.
#pragma once

#include <atomic>
#include <string>
#include <vector>

namespace emaseg::cli {

// Set by the first signal; the pipeline polls it.
std::atomic<bool>& stop_requested();

void install_signal_handlers();

// The temporary files a second signal removes (at most 64; the latest call wins; not thread-safe: one caller at a time).
void register_temp_files(const std::vector<std::string>& files);

}  // namespace emaseg::cli
