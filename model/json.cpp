#include "model/json.h"

#include "model/utf8.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace memmamba {

namespace {
const char* type_name(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "a boolean";
    case Json::Type::Number: return "a number";
    case Json::Type::String: return "a string";
    case Json::Type::Array: return "an array";
    case Json::Type::Object: return "an object";
  }
  return "?";
}

[[noreturn]] void type_error(const std::string& what, const char* expected, Json::Type got) {
  throw JsonError(what + " must be " + expected + ", found " + type_name(got));
}

class Parser {
 public:
  Parser(const std::string& text, size_t max_depth) : s_(text), max_depth_(max_depth) {}

  Json parse_document() {
    skip_ws();
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw JsonError("JSON: " + msg + " at byte " + std::to_string(pos_));
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
    return false;
  }
  void expect_word(const char* w) {
    size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0) fail("invalid literal");
    pos_ += n;
  }

  Json parse_value(size_t depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    if (pos_ >= s_.size()) fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return Json(parse_string());
    if (c == 't') { expect_word("true"); return Json(true); }
    if (c == 'f') { expect_word("false"); return Json(false); }
    if (c == 'n') { expect_word("null"); return Json(nullptr); }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    fail(std::string("unexpected character '") + c + "'");
  }

  Json parse_object(size_t depth) {
    ++pos_;
    Json::Object obj;
    skip_ws();
    if (consume('}')) return Json(std::move(obj));
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (!consume(':')) fail("expected ':'");
      skip_ws();
      Json v = parse_value(depth + 1);
      if (obj.count(key)) fail("duplicate key \"" + key + "\"");
      obj.emplace(std::move(key), std::move(v));
      skip_ws();
      if (consume('}')) break;
      if (!consume(',')) fail("expected ',' or '}'");
    }
    return Json(std::move(obj));
  }

  Json parse_array(size_t depth) {
    ++pos_;
    Json::Array arr;
    skip_ws();
    if (consume(']')) return Json(std::move(arr));
    while (true) {
      skip_ws();
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (consume(']')) break;
      if (!consume(',')) fail("expected ',' or ']'");
    }
    return Json(std::move(arr));
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out += c; continue; }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!(consume('\\') && consume('u'))) fail("unpaired surrogate");
            uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate");
          }
          append_utf8(cp, out);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }

  Json parse_number() {
    size_t start = pos_;
    bool integral = true;
    consume('-');
    if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number");
    if (s_[pos_] == '0') ++pos_;
    else while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    if (consume('.')) {
      integral = false;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!consume('+')) consume('-');
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    std::string tok = s_.substr(start, pos_ - start);
    if (integral) {
      try {
        return Json(static_cast<int64_t>(std::stoll(tok)));
      } catch (const std::out_of_range&) {
        // beyond int64: kept as a double below
      }
    }
    double d = std::strtod(tok.c_str(), nullptr);
    if (!std::isfinite(d)) fail("number out of range");
    return Json(d);
  }

  const std::string& s_;
  size_t pos_ = 0;
  size_t max_depth_;
};

void escape_to(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

bool Json::as_bool(const std::string& what) const {
  if (type_ != Type::Bool) type_error(what, "a boolean", type_);
  return bool_;
}
double Json::as_double(const std::string& what) const {
  if (type_ != Type::Number) type_error(what, "a number", type_);
  return num_;
}
int64_t Json::as_int(const std::string& what) const {
  if (type_ != Type::Number) type_error(what, "an integer", type_);
  if (is_int_) return int_;
  if (std::floor(num_) != num_ || std::fabs(num_) > 9.007199254740992e15) type_error(what, "an integer", type_);
  return static_cast<int64_t>(num_);
}
const std::string& Json::as_string(const std::string& what) const {
  if (type_ != Type::String) type_error(what, "a string", type_);
  return str_;
}
const Json::Array& Json::as_array(const std::string& what) const {
  if (type_ != Type::Array) type_error(what, "an array", type_);
  return *arr_;
}
const Json::Object& Json::as_object(const std::string& what) const {
  if (type_ != Type::Object) type_error(what, "an object", type_);
  return *obj_;
}
Json::Array& Json::mutable_array() {
  if (type_ != Type::Array) type_error("value", "an array", type_);
  return *arr_;
}
Json::Object& Json::mutable_object() {
  if (type_ != Type::Object) type_error("value", "an object", type_);
  return *obj_;
}
bool Json::contains(const std::string& key) const { return type_ == Type::Object && obj_->count(key) > 0; }
const Json& Json::at(const std::string& key) const {
  const Object& o = as_object();
  auto it = o.find(key);
  if (it == o.end()) throw JsonError("missing key \"" + key + "\"");
  return it->second;
}
Json& Json::operator[](const std::string& key) {
  if (type_ == Type::Null) *this = object();
  return mutable_object()[key];
}
void Json::push_back(Json v) {
  if (type_ == Type::Null) *this = array();
  mutable_array().push_back(std::move(v));
}

Json Json::parse(const std::string& text, size_t max_depth) { return Parser(text, max_depth).parse_document(); }

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int level) const {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (type_) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += bool_ ? "true" : "false"; break;
    case Type::Number: {
      if (is_int_) {
        out += std::to_string(int_);
      } else if (!std::isfinite(num_)) {
        out += "null";  // JSON has no NaN/Inf
      } else {
        // Shortest of %.15g / %.17g that reads back exactly.
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.15g", num_);
        if (std::strtod(buf, nullptr) != num_) std::snprintf(buf, sizeof buf, "%.17g", num_);
        out += buf;
        if (std::strpbrk(buf, ".eEn") == nullptr) out += ".0";  // keep it a float on reload
      }
      break;
    }
    case Type::String: escape_to(out, str_); break;
    case Type::Array: {
      out += '[';
      bool first = true;
      for (const Json& v : *arr_) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        v.dump_to(out, indent, level + 1);
      }
      if (!arr_->empty()) newline(level);
      out += ']';
      break;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : *obj_) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        escape_to(out, k);
        out += indent < 0 ? ":" : ": ";
        v.dump_to(out, indent, level + 1);
      }
      if (!obj_->empty()) newline(level);
      out += '}';
      break;
    }
  }
}

}  // namespace memmamba
