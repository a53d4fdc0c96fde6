#include "check.h"

#include <algorithm>
#include <cstdio>
#include <exception>

namespace check {
namespace {
std::vector<std::string>& args() {
  static std::vector<std::string> values;
  return values;
}
}  // namespace

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

const std::string& test_arg(std::size_t i) {
  if (i >= args().size()) throw Failure("missing command-line argument #" + std::to_string(i));
  return args()[i];
}

}  // namespace check

int main(int argc, char** argv) {
  std::vector<std::string> selected;
  bool after_dashes = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--" && !after_dashes) after_dashes = true;
    else if (after_dashes) selected.push_back(arg);
    else check::args().push_back(arg);
  }
  int failed = 0, ran = 0;
  for (const check::Case& test : check::registry()) {
    if (!selected.empty() && std::find(selected.begin(), selected.end(), test.name) == selected.end())
      continue;
    ++ran;
    try {
      test.body();
      std::printf("[  OK  ] %s\n", test.name);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("[ FAIL ] %s: %s\n", test.name, e.what());
    } catch (...) {
      ++failed;
      std::printf("[ FAIL ] %s: unknown exception\n", test.name);
    }
    std::fflush(stdout);
  }
  std::printf("%d/%d passed\n", ran - failed, ran);
  return failed == 0 && ran > 0 ? 0 : 1;
}
