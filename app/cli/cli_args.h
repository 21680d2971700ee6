// A small command-line parser: --name value / --name=value options, flags and positionals,
// with typed, range-checked access. Errors throw UsageError (exit code 2).
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace memmamba::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  // `flags` take no value; every other --option takes one. Unknown options are refused.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& options, const std::set<std::string>& flags);
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string require(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  double get_double(const std::string& name, double fallback, double lo, double hi) const;
  std::vector<int64_t> get_int_list(const std::string& name, const std::vector<int64_t>& fallback, int64_t lo, int64_t hi) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positionals_;
};

// Parses "4k", "64K", "1M", "1000".
int64_t parse_count(const std::string& text, const std::string& what);

}  // namespace memmamba::cli
