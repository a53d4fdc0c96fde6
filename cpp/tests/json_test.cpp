// The metadata JSON reader: valid documents, escapes, and the malformed inputs it must refuse.
#include "check.h"
#include "json.h"

#include <string>

using emaseg::detail::Json;

namespace {
bool rejects(const std::string& text) {
  try {
    Json::parse(text);
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}
}  // namespace

TEST(parses_nested_document) {
  const Json doc = Json::parse(R"( {"a": [1, -2.5e3, true, false, null], "b": {"c": "d"}} )");
  CHECK(doc.is_object());
  const auto& a = doc.find("a")->as_array();
  CHECK_EQ(a.size(), 5u);
  CHECK_EQ(a[0].as_number(), 1.0);
  CHECK_EQ(a[1].as_number(), -2500.0);
  CHECK(a[2].as_bool());
  CHECK(!a[3].as_bool());
  CHECK(a[4].is_null());
  CHECK_EQ(doc.find("b")->find("c")->as_string(), std::string("d"));
  CHECK(doc.find("missing") == nullptr);
  CHECK(a[0].find("x") == nullptr);  // find on a non-object is "absent", not an error
}

TEST(keeps_key_order) {
  const Json doc = Json::parse(R"({"z": 1, "a": 2, "m": 3})");
  const auto& members = doc.as_object();
  CHECK_EQ(members[0].first, std::string("z"));
  CHECK_EQ(members[2].first, std::string("m"));
}

TEST(decodes_string_escapes) {
  CHECK_EQ(Json::parse(R"("a\"b\\c\/d\n\t")").as_string(), std::string("a\"b\\c/d\n\t"));
  CHECK_EQ(Json::parse(R"("\u00e9")").as_string(), std::string("\xc3\xa9"));            // é
  CHECK_EQ(Json::parse(R"("\u20ac")").as_string(), std::string("\xe2\x82\xac"));        // €
  CHECK_EQ(Json::parse(R"("\ud83d\ude00")").as_string(), std::string("\xf0\x9f\x98\x80"));  // 😀
  CHECK_EQ(Json::parse("\"caf\xc3\xa9\"").as_string(), std::string("caf\xc3\xa9"));  // raw UTF-8
}

TEST(parses_numbers_exactly) {
  CHECK_EQ(Json::parse("0").as_number(), 0.0);
  CHECK_EQ(Json::parse("-0.5").as_number(), -0.5);
  CHECK_EQ(Json::parse("0.229").as_number(), 0.229);  // from_chars rounds like Python writes
  CHECK_EQ(Json::parse("1E2").as_number(), 100.0);
  CHECK_EQ(Json::parse("123456789").as_number(), 123456789.0);
}

TEST(rejects_malformed_documents) {
  CHECK(rejects(""));
  CHECK(rejects("{"));
  CHECK(rejects("[1, 2,]"));
  CHECK(rejects(R"({"a": 1,})"));
  CHECK(rejects(R"({"a" 1})"));
  CHECK(rejects(R"({a: 1})"));
  CHECK(rejects("01"));
  CHECK(rejects("+1"));
  CHECK(rejects("1."));
  CHECK(rejects(".5"));
  CHECK(rejects("1e"));
  CHECK(rejects("tru"));
  CHECK(rejects("nul"));
  CHECK(rejects(R"("unterminated)"));
  CHECK(rejects(R"("bad \x escape")"));
  CHECK(rejects(R"("\ud83d alone")"));
  CHECK(rejects("\"tab\there\""));
  CHECK(rejects("1 2"));
  CHECK(rejects(std::string(100, '[') + std::string(100, ']')));  // deeper than the limit
}

TEST(reports_error_offset) {
  try {
    Json::parse(R"({"a": [1, 2,]})");
    CHECK(false);
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("byte 12") != std::string::npos);
  }
}

TEST(type_mismatch_throws) {
  const Json doc = Json::parse(R"({"n": 1})");
  CHECK_THROWS_IF(doc.find("n")->as_string(), std::invalid_argument,
                  [](const std::invalid_argument& e) {
                    return std::string(e.what()).find("expected a JSON string, got number") !=
                           std::string::npos;
                  });
}
