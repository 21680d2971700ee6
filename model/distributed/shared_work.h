// Spreads the units of an evaluation (passkey cases, documents cases, perplexity windows) over
// the ranks of a world through its store: a free rank takes the next unit nobody has taken,
// so a rank that drew long cases takes fewer. The leader gathers every unit's result.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/distributed/world.h"

namespace memmamba {

// Runs units [0, count) with `run_unit` (its result as text) over the ranks of `world` (null or
// a world of one: all of them here, in order). The leader returns every result in unit order;
// the other ranks return an empty vector once no unit is left. `progress(done, total)` counts the
// units all ranks have finished; returning false throws Cancelled. The leader gives up with a
// DistributedError when no rank finishes a unit within the world's timeout.
std::vector<std::string> share_units(World* world, const std::string& name, int64_t count,
                                     const std::function<std::string(int64_t unit)>& run_unit,
                                     const std::function<bool(int64_t done, int64_t total)>& progress = {});

}  // namespace memmamba
