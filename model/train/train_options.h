// What a training run is asked to do (TrainOptions) and what each step reports
// (TrainProgress).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace memmamba {

class World;

struct TrainOptions {
  std::string data_dir;         // train.tokens, heldout.tokens (memmamba data)
  std::string out_dir;          // model.safetensors, train-state.safetensors, metrics.csv
  ModelConfig config;           // used when starting fresh
  bool resume = false;          // continue from out_dir's training state
  std::string init_checkpoint;  // start from these weights (and their config), fresh optimizer
  // With init: tensors of this checkpoint replace those of the same name and shape (e.g. a
  // Mamba model's mixers, embedding and final norm under a MemMamba's memory).
  std::string init_backbone;
  double init_tau_note = std::numeric_limits<double>::quiet_NaN();  // with init: a new tau1 for the config
  double init_tau_retrieve = std::numeric_limits<double>::quiet_NaN();  // with init: a new tau2
  int64_t seq_len = 1024;
  int64_t batch = 8;            // sequences per optimizer step (over all micro-batches)
  int64_t accumulation = 1;     // micro-batches per step
  int64_t steps = 1000;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, clip = 1.0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  int64_t warmup = 100;
  bool cosine = true;
  bool bf16 = true;             // autocast on CUDA; ignored on the CPU
  bool cuda = false;
  uint64_t seed = 0;
  int64_t eval_every = 200, eval_batches = 4, checkpoint_every = 500;
  double passkey_fraction = 0.25;  // share of sequences that are passkey examples
  std::string passkey_tokenizer;   // needed when passkey_fraction > 0
  std::vector<std::string> passkey_books;  // haystack sentences (empty: the shard's, or the repeated filler)
  // Haystacks from the training shard's own text (decoded), so that no evaluation book is in them.
  bool passkey_shard_haystack = false;
  std::string passkey_answer_end = ".";     // what follows the key in a passkey row (passkey_training_text)
  // Passkey rows draw their case from the training mix (training_case_spec): many wordings, keys
  // of 3-10 digits, words and names, several labelled facts. Off: the first wording, 5 digits.
  bool varied_cases = false;
  // With varied cases: "all" (the whole mix), "passkey" (one fact, digit keys, the trained
  // wordings: the wording alone varies), "composed" (the same keys in wordings put together from
  // parts), "facts" (digit keys, 2-6 labelled facts in half the rows), "composed-facts" (the
  // facts mix, its single-fact rows in composed wordings), "composed-all" (that mix with half
  // its rows with labelled facts in composed fact wordings too) or "composed-any" (composed-all
  // with words and names as keys and up to 8 facts, as in "all").
  std::string case_mix = "all";
  // The digits of the mixes' digit keys, drawn uniformly from [first, second] (--key-digits).
  std::pair<int64_t, int64_t> key_digits{3, 10};
  // Reference marks (footnote, verse, page and chapter numbers) per 1,000 haystack tokens of a
  // passkey row, on average (--reference-marks; eval::CaseSpec::reference_marks). Their digits
  // are quiet tokens even where surprising: with --quiet-notes the note rule learns that a
  // number in running text is not a fact because it is a number.
  double reference_marks = 0;
  // The share of a passkey row's other numbers (other facts' values, distractors) that carry a
  // run of the key's last digits (--look-alikes; eval::CaseSpec::look_alikes): an answer that
  // runs on from matching digits into another value is then taught wrong on purpose.
  double look_alikes = 0;
  // Rows with labelled facts ask every fact (--follow-up-questions): after the answer, each other
  // fact's question and value in a random order, every answer taught. One question per row
  // teaches a label look-up from a single answer; this gives one per fact.
  bool follow_up_questions = false;
  // The answer's end is read from a note (--note-key-end): the needle's piece right after each key
  // copy becomes a selection and retrieval target, read where the answer predicts its end. A
  // note is made from what a token has seen, so the key's last digit cannot tell that it is the
  // last; the piece after it can.
  bool note_key_end = false;
  // What follows each answer's stop is taught too (--teach-after-end): the piece after the end
  // (the next follow-up question's first word) joins the answer loss. A row's last answer has
  // nothing after it (a trailing newline is normalised away by the tokenizer).
  // With --note-key-end the stop is read, but the read after it is taught nothing and the answer
  // goes on with digits ("8961.2.6."; docs/model.md, "D12, D13 and D14").
  bool teach_after_end = false;
  // Shortest passkey example in tokens (0: min(256, seq_len / 2)); longer examples put the key
  // further from its answer, beyond what the SSM's state alone still carries.
  int64_t passkey_min_tokens = 0;
  // Hold the fusion scales (how loud the memory's read-out is) as loaded, e.g. as chosen by a
  // long-context probe: short rows never show the loudness that long contexts need.
  bool freeze_fusion_scales = false;
  // Share of passkey rows whose needle the SSM does not see (blind needles): from the key's
  // first piece to `blind_needle_margin` tokens past its second copy, every layer's step size dt
  // is 0, so the key reaches the answer only through the notes, as when the key lies far beyond
  // the SSM's horizon (a row of 4k tokens shows what a key 1M tokens back looks like).
  double blind_needle_fraction = 0;
  // In a blind row with labelled facts, hide every fact's value, not only the asked one's: past
  // the SSM's horizon none of them is in its state, and a row that hides one alone lets the
  // answer pick the value the state lacks instead of the one the label names.
  bool blind_every_fact = false;
  // Share of passkey rows that are instead DeciMamba-format document rows (eval::DocumentCase):
  // 1-30 documents (up to one per 128 tokens in rows longer than 4k) of consecutive haystack
  // sentences, the question before each, the golden document's id after "<|Answer|> <|Document ";
  // the answer loss teaches the id's pieces.
  double document_fraction = 0;
  // Document rows teach the memory too (--document-reads): each piece of the answer's id reads
  // the note of the same piece in the golden document's header or of the golden fact's value
  // (whose note can carry the id the SSM holds there); the id's first piece is a choosing read.
  bool document_reads = false;
  int64_t blind_needle_margin = -1;  // -1: (conv_kernel - 1) x n_layers, how far the convolutions spread a token
  // Weight of the retrieval loss (MemMamba only): on passkey rows, each answer position that
  // predicts a piece of the key is taught to put its pool attention on that piece's note.
  double retrieval_loss_weight = 0;
  // Weight of an extra cross-entropy on the answer's key pieces of passkey rows (any model).
  double answer_loss_weight = 0;
  // Weight of the selection loss (MemMamba only): the needle's key tokens are taught to clear
  // the note threshold tau1 (by 0.05) in every layer.
  double note_loss_weight = 0;
  // How far above tau1 the selection loss lifts a key (its priority in the pool).
  double note_loss_margin = 0.05;
  // How much more, in the retrieval and answer losses, each answer's first piece counts in rows
  // with several labelled facts (--choice-weight): the read that chooses a value by its label.
  double choice_weight = 1;
  // How much each answer's end piece counts in the answer loss against a key piece (--end-weight).
  // With note_key_end the end is a read target and counts as a key piece.
  double answer_end_weight = 1;
  // The surprise selection loss (MemMamba only), on every row: the `surprise_note_share` of the
  // row's tokens that the model found hardest to predict are taught to clear tau1 and the
  // tokens easier than the row's median to stay under it, so a book's notes go to names,
  // numbers and rare words (0: off).
  double surprise_note_weight = 0;
  double surprise_note_share = 0.01;
  double surprise_note_band = 0.05;  // their importance: from tau1 + 0.01 to tau1 + this (below the keys)
  // The quiet loss (MemMamba only): every token that neither the selection loss nor the surprise
  // loss asks to be noted is taught to stay under tau1, which bounds a learned note rule's note
  // rate (0: off).
  double quiet_note_weight = 0;
  // Data parallel over the ranks of this world (null: one process). Each rank takes its share
  // of every micro-batch's rows (`batch` is the global batch), gradients are averaged over the
  // ranks, and rank 0 alone evaluates and writes the checkpoints and the metrics.
  std::shared_ptr<World> world;
  // Gradients are summed over the ranks in buckets of about this size, each as soon as the
  // backward pass has filled it (DDP's bucket_cap_mb).
  int64_t gradient_bucket_bytes = 25 << 20;
};

struct TrainProgress {
  int64_t step, steps, tokens;
  double loss, lr, grad_norm, tokens_per_second, note_rate;
  double eval_loss;  // NaN when not evaluated at this step
  // Retrieval loss, mean attention mass on the key's notes, and the share of answer pieces x
  // pool attentions where a key note was visible and read; NaN without the retrieval loss.
  double retrieval_loss = std::nan(""), key_attention = std::nan(""), retrieval_coverage = std::nan("");
  double answer_loss = std::nan("");  // cross-entropy on the answers' key pieces and end, with --answer-loss
  // Selection loss and the share of key tokens x layers noted, with --note-loss.
  double note_loss = std::nan(""), key_noted = std::nan("");
  // Mean attention mass on the asked value's note where an answer chooses among labelled facts.
  double choice_attention = std::nan("");
  // Surprise selection loss and the shares of surprising and predictable tokens x layers noted.
  double surprise_loss = std::nan(""), surprising_noted = std::nan(""), predictable_noted = std::nan("");
  // Quiet loss and the share of its tokens x layers noted anyway, with --quiet-notes.
  double quiet_loss = std::nan(""), stray_noted = std::nan("");
  // The share of reference marks' number tokens x layers noted, with --reference-marks.
  double marks_noted = std::nan("");
};

}  // namespace memmamba
