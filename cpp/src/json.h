// A small JSON reader for metadata.json: the runtime may depend on nothing but LibTorch and
// OpenCV. Objects keep their key order; numbers are doubles.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emaseg::detail {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  // Parses a whole document (UTF-8). Throws std::invalid_argument naming the byte offset.
  static Json parse(std::string_view text);

  Json() = default;
  static Json boolean(bool value);
  static Json number(double value);
  static Json string(std::string value);
  static Json array(Array items);
  static Json object(Object members);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Accessors throw std::invalid_argument on a type mismatch.
  bool as_bool() const;
  double as_number() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // The member `key` of an object, or nullptr (also when this is not an object).
  const Json* find(std::string_view key) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

const char* type_name(Json::Type type);

}  // namespace emaseg::detail
