// A minimal test harness (no GoogleTest here, by choice: nothing to download or install).
//
//   TEST(parses_numbers) { CHECK_EQ(parse("1"), 1); }
//
// Each test binary runs all its TESTs (or those named on the command line after `--`), prints
// one line per test, and exits non-zero if any failed. test_arg(i) gives the i-th argument
// before `--` (model paths from CMake).
#pragma once

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace check {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Case {
  const char* name;
  void (*body)();
};

std::vector<Case>& registry();
// The i-th command-line argument (0-based, program name excluded); fails the test if absent.
const std::string& test_arg(std::size_t i);

inline bool add(const char* name, void (*body)()) {
  registry().push_back({name, body});
  return true;
}

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::ostringstream out;
  out << file << ":" << line << ": " << what;
  throw Failure(out.str());
}

template <typename A, typename B>
void check_eq(const A& a, const B& b, const char* a_text, const char* b_text, const char* file,
              int line) {
  if (a == b) return;
  std::ostringstream out;
  out << "CHECK_EQ(" << a_text << ", " << b_text << "): " << a << " != " << b;
  fail(file, line, out.str());
}

}  // namespace check

#define TEST(name)                                                  \
  static void name();                                               \
  static const bool name##_registered = check::add(#name, &name);   \
  static void name()

#define CHECK(condition) \
  ((condition) ? void() : check::fail(__FILE__, __LINE__, "CHECK(" #condition ") failed"))

#define CHECK_EQ(a, b) check::check_eq((a), (b), #a, #b, __FILE__, __LINE__)

// Runs `statement`, which must throw `type`; `predicate(const type&)` must then hold.
#define CHECK_THROWS_IF(statement, type, predicate)                                        \
  do {                                                                                     \
    bool thrown_ = false;                                                                  \
    try {                                                                                  \
      statement;                                                                           \
    } catch (const type& e_) {                                                             \
      thrown_ = true;                                                                      \
      if (!(predicate)(e_))                                                                \
        check::fail(__FILE__, __LINE__, std::string("unexpected " #type ": ") + e_.what()); \
    }                                                                                      \
    if (!thrown_) check::fail(__FILE__, __LINE__, #statement " did not throw " #type);     \
  } while (false)
