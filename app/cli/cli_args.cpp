#include "app/cli/cli_args.h"

#include <cmath>
#include <sstream>

namespace memmamba::cli {

namespace {
std::string short_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}
}  // namespace

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& options, const std::set<std::string>& flags) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) { value = name.substr(eq + 1); name = name.substr(0, eq); }
      if (flags.count(name)) {
        if (inline_value) throw UsageError("--" + name + " takes no value");
        flags_.insert(name);
      } else if (options.count(name)) {
        if (!inline_value) {
          if (i + 1 >= argv.size()) throw UsageError("--" + name + " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      } else {
        throw UsageError("unknown option --" + name);
      }
    } else {
      positionals_.push_back(a);
    }
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw UsageError("--" + name + " is required");
  return it->second;
}

int64_t parse_count(const std::string& text, const std::string& what) {
  if (text.empty()) throw UsageError(what + ": empty value");
  std::string digits = text;
  int64_t scale = 1;
  const char last = digits.back();
  if (last == 'k' || last == 'K') { scale = 1024; digits.pop_back(); }
  else if (last == 'm' || last == 'M') { scale = 1024 * 1024; digits.pop_back(); }
  if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789-") != std::string::npos)
    throw UsageError(what + ": \"" + text + "\" is not a whole number");
  try {
    return std::stoll(digits) * scale;
  } catch (const std::exception&) {
    throw UsageError(what + ": \"" + text + "\" is not a whole number");
  }
}

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
  if (!has(name)) return fallback;
  const int64_t v = parse_count(get(name, ""), "--" + name);
  if (v < lo || v > hi)
    throw UsageError("--" + name + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double Args::get_double(const std::string& name, double fallback, double lo, double hi) const {
  if (!has(name)) return fallback;
  const std::string s = get(name, "");
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || !std::isfinite(v)) throw UsageError("--" + name + ": \"" + s + "\" is not a number");
  if (v < lo || v > hi)
    throw UsageError("--" + name + " = " + s + " is outside [" + short_number(lo) + ", " + short_number(hi) + "]");
  return v;
}

std::vector<int64_t> Args::get_int_list(const std::string& name, const std::vector<int64_t>& fallback, int64_t lo,
                                        int64_t hi) const {
  if (!has(name)) return fallback;
  std::vector<int64_t> out;
  std::stringstream ss(get(name, ""));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const int64_t v = parse_count(item, "--" + name);
    if (v < lo || v > hi)
      throw UsageError("--" + name + ": " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError("--" + name + " needs at least one value");
  return out;
}

}  // namespace memmamba::cli
