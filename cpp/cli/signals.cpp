#include "signals.h"

#include <csignal>
#include <cstdio>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace emaseg::cli {
namespace {

// Only async-signal-safe work in the handler: a lock-free flag, unlink, raise.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
constexpr int kMaxTempFiles = 64;  // a video per stream, with room
char g_temp_files[kMaxTempFiles][4096];  // written before the handlers can see them
std::atomic<int> g_temp_count{0};

extern "C" void on_signal(int signum) {
  if (!g_stop.exchange(true)) return;
#if defined(__unix__) || defined(__APPLE__)
  for (int i = 0; i < g_temp_count.load(); ++i) unlink(g_temp_files[i]);
#endif
  std::signal(signum, SIG_DFL);
  std::raise(signum);
}

}  // namespace

std::atomic<bool>& stop_requested() { return g_stop; }

void install_signal_handlers() {
#if defined(__unix__) || defined(__APPLE__)
  struct sigaction action = {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
#else
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
#endif
}

void register_temp_files(const std::vector<std::string>& files) {
  g_temp_count.store(0);  // the handler never reads a slot while it is rewritten
  int count = 0;
  for (const auto& file : files) {
    if (count == kMaxTempFiles || file.size() >= sizeof g_temp_files[0]) break;
    std::snprintf(g_temp_files[count++], sizeof g_temp_files[0], "%s", file.c_str());
  }
  g_temp_count.store(count);
}

}  // namespace emaseg::cli
