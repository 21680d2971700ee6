// Where the bundled files (sample books, tokenizer, shipped models) are: next to the
// source tree (build/bin/../../sample_data), installed (../share/memmamba/sample_data,
// /usr/share/memmamba/sample_data), or ./sample_data.
#pragma once
#include <string>

namespace memmamba {

// Absolute path of a bundled file, or "" when none of the places has it.
std::string find_sample_file(const std::string& name);

}  // namespace memmamba
