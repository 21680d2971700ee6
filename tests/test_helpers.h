// Small shared fixtures for the model tests.
#pragma once
#include "model/config.h"

namespace memmamba::testing {

// A model small enough to run step mode quickly but with every part switched on.
inline ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 16;
  c.n_layers = 4;
  c.d_state = 4;
  c.summary_dim = 8;
  c.pool_slots = 4;
  c.note_window = 1;
  c.cross_layer_period = 2;
  c.cross_layer_groups = 2;
  c.tau_note = 0.2;
  c.tau_retrieve = 0.05;
  c.fusion_init_scale = 0.5;
  return c;
}

}  // namespace memmamba::testing
