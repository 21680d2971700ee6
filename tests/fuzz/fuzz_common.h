// Shared by the fuzz targets: a parser may refuse its input with one of the project's
// error types (a message for the user); anything else escaping it (std::out_of_range,
// std::length_error, std::bad_alloc, a signal, a sanitizer report) is a bug libFuzzer reports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

template <typename Body>
int refusal_is_fine(Body&& body) {
  try {
    body();
  } catch (const std::out_of_range&) {
    throw;  // an unchecked index: a bug
  } catch (const std::length_error&) {
    throw;  // a size taken from the input unchecked: a bug
  } catch (const std::runtime_error&) {
    // FormatError, FileError, JsonError, TokenizerError: refused with a message.
  } catch (const std::invalid_argument&) {
    // Config and result validation: refused with a message.
  }
  return 0;
}

inline std::string bytes_of(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}
