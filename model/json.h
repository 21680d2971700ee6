// A small JSON value with a strict parser and a writer. Used for configs,
// safetensors headers, traces' metadata and result files. Torch-free.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace memmamba {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::Bool), bool_(b) {}
  Json(int v) : Json(static_cast<int64_t>(v)) {}
  Json(int64_t v) : type_(Type::Number), num_(static_cast<double>(v)), int_(v), is_int_(true) {}
  Json(uint64_t v) : Json(static_cast<int64_t>(v)) {}
  Json(double v) : type_(Type::Number), num_(v) {}
  Json(const char* s) : type_(Type::String), str_(s) {}
  Json(std::string s) : type_(Type::String), str_(std::move(s)) {}
  Json(Array a) : type_(Type::Array), arr_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : type_(Type::Object), obj_(std::make_shared<Object>(std::move(o))) {}

  static Json object() { return Json(Object{}); }
  static Json array() { return Json(Array{}); }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_integer() const { return type_ == Type::Number && is_int_; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Typed access; throws JsonError naming `what` on a type mismatch.
  bool as_bool(const std::string& what = "value") const;
  double as_double(const std::string& what = "value") const;
  int64_t as_int(const std::string& what = "value") const;
  const std::string& as_string(const std::string& what = "value") const;
  const Array& as_array(const std::string& what = "value") const;
  const Object& as_object(const std::string& what = "value") const;
  Array& mutable_array();
  Object& mutable_object();

  bool contains(const std::string& key) const;
  const Json& at(const std::string& key) const;  // throws when missing
  Json& operator[](const std::string& key);       // creates (object only)
  void push_back(Json v);

  std::string dump(int indent = -1) const;
  static Json parse(const std::string& text, size_t max_depth = 64);

 private:
  void dump_to(std::string& out, int indent, int level) const;
  Type type_ = Type::Null;
  bool bool_ = false;
  double num_ = 0;
  int64_t int_ = 0;
  bool is_int_ = false;
  std::string str_;
  std::shared_ptr<Array> arr_;
  std::shared_ptr<Object> obj_;
};

}  // namespace memmamba
