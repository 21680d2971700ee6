// Logging for the model library and its tools, through spdlog. Kept behind plain
// functions in a translation unit of its own: LibTorch 2.x ships its own fmt headers,
// which clash with the fmt that a system spdlog was built against (seen on the GPU
// machine), so spdlog is never included next to torch headers.
#pragma once
#include <functional>
#include <string>

namespace memmamba::log {

enum class Level { Debug, Info, Warn, Error };

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);
// Drops console messages below `level` (ranks other than 0 of a job keep warnings only).
void set_console_level(Level level);
// Plain "level: message" lines on stderr, for command-line tools.
void use_plain_console_format();
// Also hands every message to `sink` (the app's log panel); empty to remove.
void set_extra_sink(std::function<void(Level, const std::string&)> sink);

}  // namespace memmamba::log
