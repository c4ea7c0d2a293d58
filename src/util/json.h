// A small JSON value: enough to parse safetensors headers strictly and to print `--json` reports.
// Numbers keep their integer form when they have one, because safetensors offsets exceed 2^53
// only in theory but shapes and offsets must never pass through a double.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace coatnet::json {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value {
 public:
  enum class Type { Null, Bool, Int, Double, String, Array, Object };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::Bool), bool_(b) {}
  Value(int v) : type_(Type::Int), int_(v) {}
  Value(int64_t v) : type_(Type::Int), int_(v) {}
  Value(uint64_t v) : type_(Type::Int), int_(static_cast<int64_t>(v)) {}
  Value(double v) : type_(Type::Double), double_(v) {}
  Value(const char* s) : type_(Type::String), string_(s) {}
  Value(std::string s) : type_(Type::String), string_(std::move(s)) {}

  static Value array() { return Value(Type::Array); }
  static Value object() { return Value(Type::Object); }

  Type type() const { return type_; }
  bool is_object() const { return type_ == Type::Object; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_string() const { return type_ == Type::String; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Double; }

  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  bool as_bool() const;
  const std::vector<Value>& items() const;
  // Object members in insertion order (reports read better in the order they were built).
  const std::vector<std::pair<std::string, Value>>& members() const;

  const Value* find(const std::string& key) const;
  Value& operator[](const std::string& key);  // object: insert or get
  void push_back(Value v);

  std::string dump(int indent = -1) const;
  static Value parse(const std::string& text);  // throws ParseError with the byte offset

 private:
  explicit Value(Type t) : type_(t) {}
  void dump_to(std::string& out, int indent, int depth) const;

  Type type_ = Type::Null;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

std::string quote(const std::string& s);

}  // namespace coatnet::json
