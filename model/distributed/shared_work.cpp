#include "model/distributed/shared_work.h"

#include <chrono>
#include <thread>

#include "model/memmamba.h"

namespace memmamba {

std::vector<std::string> share_units(World* world, const std::string& name, int64_t count,
                                     const std::function<std::string(int64_t)>& run_unit,
                                     const std::function<bool(int64_t, int64_t)>& progress) {
  std::vector<std::string> results;
  if (!world || world->size() == 1) {
    for (int64_t unit = 0; unit < count; ++unit) {
      results.push_back(run_unit(unit));
      if (progress && !progress(unit + 1, count)) throw Cancelled();
    }
    return results;
  }
  const std::string result_key = name + "/result/";
  for (int64_t unit = world->take_ticket(name); unit < count; unit = world->take_ticket(name)) {
    world->publish(result_key + std::to_string(unit), run_unit(unit));
    const int64_t done = world->take_ticket(name + "/finished") + 1;
    if (progress && !progress(done, count)) throw Cancelled();
  }
  if (!world->leader()) return results;
  // The leader waits for the units the others still run, as long as one of them finishes now and then.
  using clock = std::chrono::steady_clock;
  int64_t done = world->peek_counter(name + "/finished");
  auto last_change = clock::now();
  while (done < count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int64_t now_done = world->peek_counter(name + "/finished");
    if (now_done != done) {
      done = now_done;
      last_change = clock::now();
      if (progress && !progress(done, count)) throw Cancelled();
    } else if (clock::now() - last_change > world->options().timeout) {
      throw DistributedError("no rank finished a unit of \"" + name + "\" in " +
                             std::to_string(world->options().timeout.count()) + " s (" + std::to_string(done) +
                             " of " + std::to_string(count) + " done): a rank hangs or died");
    }
  }
  for (int64_t unit = 0; unit < count; ++unit) results.push_back(world->read(result_key + std::to_string(unit)));
  return results;
}

}  // namespace memmamba
