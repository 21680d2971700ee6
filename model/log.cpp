#include "model/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace memmamba::log {

namespace {
std::mutex g_sink_mutex;
std::function<void(Level, const std::string&)> g_sink;

void forward(Level level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_sink_mutex);
  if (g_sink) g_sink(level, message);
}
}  // namespace

void debug(const std::string& m) { spdlog::debug(m); forward(Level::Debug, m); }
void info(const std::string& m) { spdlog::info(m); forward(Level::Info, m); }
void warn(const std::string& m) { spdlog::warn(m); forward(Level::Warn, m); }
void error(const std::string& m) { spdlog::error(m); forward(Level::Error, m); }

void set_console_level(Level level) {
  spdlog::set_level(level == Level::Debug  ? spdlog::level::debug
                    : level == Level::Info ? spdlog::level::info
                    : level == Level::Warn ? spdlog::level::warn
                                           : spdlog::level::err);
}

void use_plain_console_format() { spdlog::set_pattern("%^%l%$: %v"); }

void set_extra_sink(std::function<void(Level, const std::string&)> sink) {
  std::lock_guard<std::mutex> lock(g_sink_mutex);
  g_sink = std::move(sink);
}

}  // namespace memmamba::log
