#include "model/train/training_rows.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "model/text_input.h"

namespace memmamba {

namespace {

// Index of the token holding byte `byte` of the encoded text, or -1.
int64_t token_at_byte(const Encoding& enc, int64_t byte) {
  auto it = std::upper_bound(enc.end.begin(), enc.end.end(), byte);
  if (it == enc.end.end()) return -1;
  const int64_t i = it - enc.end.begin();
  return enc.begin[static_cast<size_t>(i)] <= byte ? i : -1;
}

// Calls piece(i) for each token i of `enc` that holds some of the bytes [begin, end), in order.
template <typename Piece>
void for_each_piece(const Encoding& enc, int64_t begin, int64_t end, Piece piece) {
  for (size_t i = 0; i < enc.ids.size(); ++i)
    if (enc.end[i] > begin && enc.begin[i] < end) piece(static_cast<int64_t>(i));
}

// Where token i of `enc` sits in a batch row of `row_length` tokens whose end the encoding's
// last tokens fill: -1 where the token was cut off (or i is -1).
auto row_positions(const Encoding& enc, int64_t row_length) {
  const int64_t shift = row_length - static_cast<int64_t>(enc.ids.size());
  return [shift](int64_t i) { return i < 0 || i + shift < 0 ? int64_t{-1} : i + shift; };
}

// Appends a read: the answer position `query` of batch row `row` should attend the note at row
// position `a` or `b` (-1: none); `choice` marks a read that chooses among several values.
void add_read(RetrievalTargets& out, int64_t row, int64_t query, int64_t a, int64_t b, bool choice) {
  out.choice.resize(out.row.size(), 0);
  out.choice.push_back(choice ? 1 : 0);
  out.row.push_back(row);
  out.query.push_back(query);
  out.first.push_back(a);
  out.second.push_back(b);
}

// The first two of a value's mentions in its needle (-1 where absent): the copies a read targets.
std::pair<int64_t, int64_t> first_two(const std::vector<int64_t>& at) {
  return {at.empty() ? -1 : at[0], at.size() < 2 ? -1 : at[1]};
}

// Byte offsets in the prompt of the key's two copies in the needle (-1 where absent).
std::pair<int64_t, int64_t> needle_key_copies(const eval::PasskeyCase& c) { return first_two(eval::key_mentions(c)); }

// Sentences of the training shard's text: 64 windows of 16k tokens spread over the shard,
// decoded. Haystacks made of them hold only training text.
std::vector<std::string> shard_sentences(const Tokenizer& tokenizer, const TokenShard& shard) {
  std::vector<std::string> out;
  const uint64_t window = 16384, windows = 64;
  const uint64_t n = shard.tokens.size();
  for (uint64_t w = 0; w < windows && n > 0; ++w) {
    const uint64_t start = n > window ? (n - window) / windows * w : 0;
    std::vector<int32_t> ids;
    for (uint64_t i = start; i < std::min(n, start + window); ++i) ids.push_back(static_cast<int32_t>(shard.tokens[i]));
    auto s = eval::split_sentences(tokenizer.decode(ids));
    if (s.size() > 2) out.insert(out.end(), s.begin() + 1, s.end() - 1);  // the cut first and last ones out
    if (n <= window) break;
  }
  return out;
}

}  // namespace

void append_targets(const RetrievalTargets& from, RetrievalTargets& to) {
  to.row.insert(to.row.end(), from.row.begin(), from.row.end());
  to.query.insert(to.query.end(), from.query.begin(), from.query.end());
  to.first.insert(to.first.end(), from.first.begin(), from.first.end());
  to.second.insert(to.second.end(), from.second.begin(), from.second.end());
  to.choice.resize(to.row.size() - from.row.size(), 0);
  to.choice.insert(to.choice.end(), from.choice.begin(), from.choice.end());
  to.choice.resize(to.row.size(), 0);
  to.end_row.insert(to.end_row.end(), from.end_row.begin(), from.end_row.end());
  to.end_query.insert(to.end_query.end(), from.end_query.begin(), from.end_query.end());
  to.other_value_row.insert(to.other_value_row.end(), from.other_value_row.begin(), from.other_value_row.end());
  to.other_value_position.insert(to.other_value_position.end(), from.other_value_position.begin(),
                                 from.other_value_position.end());
  to.mark_row.insert(to.mark_row.end(), from.mark_row.begin(), from.mark_row.end());
  to.mark_position.insert(to.mark_position.end(), from.mark_position.begin(), from.mark_position.end());
}

void add_mark_positions(const eval::PasskeyCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                        RetrievalTargets& out) {
  const auto at = row_positions(enc, row_length);
  for (const auto& [begin, end] : c.marks)
    for_each_piece(enc, begin, end, [&](int64_t i) {
      const int64_t pos = at(i);
      if (pos < 0) return;
      out.mark_row.push_back(row);
      out.mark_position.push_back(pos);
    });
}

// Copies tokens [start, start + n) of a shard into an int64 row.
void copy_window(const TokenShard& shard, uint64_t start, int64_t n, int64_t* row) {
  for (int64_t i = 0; i < n; ++i) row[i] = shard.tokens[start + static_cast<uint64_t>(i)];
}

BatchMaker::BatchMaker(const TrainOptions& o, const TokenShard& train, int64_t blind_margin)
    : o_(o), train_(train), blind_margin_(blind_margin) {
  if (o.passkey_fraction > 0) {
    if (o.passkey_tokenizer.empty()) throw std::invalid_argument("passkey examples need a tokenizer");
    tokenizer_.emplace(Tokenizer::load(o.passkey_tokenizer));
    std::vector<std::string> sentences;
    for (const std::string& b : o.passkey_books) {
      auto s = eval::split_sentences(load_text_file(b));
      sentences.insert(sentences.end(), s.begin(), s.end());
    }
    if (o.passkey_shard_haystack) sentences = shard_sentences(*tokenizer_, train);
    generator_.emplace(*tokenizer_, sentences,
                       sentences.empty() ? eval::Haystack::RepeatedFiller : eval::Haystack::BookSentences);
    if (o.document_fraction > 0) {
      if (sentences.size() < 8) throw std::invalid_argument("document rows need haystack text (the shard's or books')");
      documents_.emplace(sentence_documents(sentences));
    }
  }
  if (static_cast<int64_t>(train_.tokens.size()) < o.seq_len + 2)
    throw std::invalid_argument("the training shard holds fewer tokens than one sequence");
}

torch::Tensor BatchMaker::make(int64_t step, int64_t micro, int64_t rows, int* passkeys, RetrievalTargets* targets,
                               torch::Tensor* ssm_mask) const {
  return make_rows(step, micro, 0, rows, passkeys, targets, ssm_mask);
}

torch::Tensor BatchMaker::make_rows(int64_t step, int64_t micro, int64_t first, int64_t count, int* passkeys,
                                    RetrievalTargets* targets, torch::Tensor* ssm_mask) const {
  const int64_t L = o_.seq_len + 1;
  auto out = torch::empty({count, L}, torch::kInt64);
  int64_t* dst = out.data_ptr<int64_t>();
  // What each row brought besides its tokens; gathered in row order after the rows are made.
  struct RowExtras {
    bool passkey = false;
    RetrievalTargets targets;
    std::vector<std::pair<int64_t, int64_t>> blind;
  };
  std::vector<RowExtras> extras(static_cast<size_t>(count));
  const uint64_t span = train_.tokens.size() - static_cast<uint64_t>(L);
  // Each row draws from a stream of its own (seed, step, micro-batch, row), so a rank makes
  // only its rows, and the rows are made on several threads.
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = first + i;
      std::seed_seq seeds{static_cast<uint64_t>(o_.seed), static_cast<uint64_t>(step), static_cast<uint64_t>(micro),
                          static_cast<uint64_t>(r)};
      std::mt19937_64 rng(seeds);
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      int64_t* row = dst + i * L;
      RowExtras& extra = extras[static_cast<size_t>(i)];
      copy_window(train_, rng() % span, L, row);
      if (!generator_ || L < 128 || unit(rng) >= o_.passkey_fraction) continue;  // prompts need >= 64 tokens
      extra.passkey = true;
      if (documents_ && unit(rng) < o_.document_fraction) {
        // A document row: as many documents as fit (1-30 drawn, halved until they do; rows
        // longer than 4k tokens draw up to one per 128 tokens), at the end of the row like a
        // passkey example.
        const int64_t most_noise = L <= 4096 ? 29 : L / 128 - 1;
        int64_t noise = std::uniform_int_distribution<int64_t>(0, most_noise)(rng);
        const uint64_t seed = rng();
        eval::DocumentCase c = documents_->make(noise, seed);
        Encoding enc = tokenizer_->encode(document_training_text(c));
        while (static_cast<int64_t>(enc.ids.size()) > L && noise > 0) {
          noise /= 2;
          c = documents_->make(noise, seed);
          enc = tokenizer_->encode(document_training_text(c));
        }
        const int64_t n = std::min<int64_t>(static_cast<int64_t>(enc.ids.size()), L);
        for (int64_t k = 0; k < n; ++k) row[L - n + k] = enc.ids[enc.ids.size() - n + k];
        if (targets) add_document_targets(c, enc, i, L, extra.targets, o_.document_reads);
        continue;
      }
      // A passkey example (prompt, then the key) at a random length and depth, placed at
      // the end of the row; book text fills whatever is left before it.
      int64_t target = passkey_example_tokens(o_, L, rng());
      eval::CaseSpec spec = o_.varied_cases ? training_case_spec(rng, o_.case_mix, o_.key_digits) : eval::CaseSpec::legacy();
      spec.reference_marks = o_.reference_marks;
      spec.look_alikes = o_.look_alikes;
      const bool follow_up = o_.follow_up_questions && spec.facts > 1;
      if (follow_up) target = std::max<int64_t>(64, target - (spec.facts - 1) * kFollowUpTokens);
      const eval::PasskeyCase c = generator_->make(target, unit(rng), rng(), spec);
      std::string text = passkey_training_text(c, o_.passkey_answer_end);
      std::vector<FollowUp> follow_ups;
      if (follow_up) {
        std::mt19937_64 order_rng(rng());
        append_follow_ups(c, o_.passkey_answer_end, order_rng, text, follow_ups);
      }
      Encoding enc = tokenizer_->encode(text);
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(enc.ids.size()), L);
      for (int64_t k = 0; k < n; ++k) row[L - n + k] = enc.ids[enc.ids.size() - n + k];
      if (targets) {
        add_retrieval_targets(c, enc, i, L, extra.targets, o_.note_key_end, follow_ups, o_.teach_after_end);
        add_mark_positions(c, enc, i, L, extra.targets);
      }
      // Drawn from a stream of its own, so that a run with blind needles and one without (a
      // MemMamba and its Mamba twin) get the same rows.
      std::mt19937_64 blind_rng(rng() ^ 0xB11DB11DULL);
      if (o_.blind_needle_fraction > 0 && unit(blind_rng) < o_.blind_needle_fraction && ssm_mask)
        extra.blind = blind_needle_spans(c, enc, L, blind_margin_, o_.blind_every_fact);
    }
  });
  for (int64_t i = 0; i < count; ++i) {
    const RowExtras& extra = extras[static_cast<size_t>(i)];
    if (extra.passkey && passkeys) ++*passkeys;
    if (targets) append_targets(extra.targets, *targets);
    for (const auto& [begin, end] : extra.blind) {
      if (begin >= std::min(end, o_.seq_len)) continue;
      if (!ssm_mask->defined()) *ssm_mask = torch::ones({count, o_.seq_len}, torch::kFloat32);
      ssm_mask->select(0, i).narrow(0, begin, std::min(end, o_.seq_len) - begin).zero_();
    }
  }
  return out;
}

std::vector<std::string> sentence_documents(const std::vector<std::string>& sentences) {
  std::vector<std::string> out;
  size_t size = 3;
  for (size_t at = 0; at + size <= sentences.size(); at += size, size = size == 6 ? 3 : size + 1) {
    std::string doc = sentences[at];
    for (size_t k = 1; k < size; ++k) doc += " " + sentences[at + k];
    out.push_back(std::move(doc));
  }
  return out;
}

std::string document_training_text(const eval::DocumentCase& c) { return c.prompt + std::to_string(c.golden_id) + "|>"; }

void add_document_targets(const eval::DocumentCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                          RetrievalTargets& out, bool reads) {
  const std::string id = std::to_string(c.golden_id);
  const auto answer = static_cast<int64_t>(c.prompt.size());
  const auto id_end = answer + static_cast<int64_t>(id.size());
  const auto at = row_positions(enc, row_length);
  // With reads: where the golden header's id begins (a byte of the prompt), and the row position
  // of the fact value's last piece (the byte before its full stop).
  int64_t header_id = -1, value_last = -1;
  if (reads) {
    const std::string header_start = eval::kDocumentHeader;
    const size_t header = c.prompt.find(header_start + id + "|> ");
    if (header != std::string::npos) header_id = static_cast<int64_t>(header + header_start.size());
    const size_t fact = c.prompt.find(c.fact);
    if (fact != std::string::npos) value_last = at(token_at_byte(enc, static_cast<int64_t>(fact + c.fact.size()) - 2));
  }
  bool first_piece = true;
  for_each_piece(enc, answer, id_end, [&](int64_t i) {
    const int64_t query = at(i) - 1;
    if (query < 0) return;
    const int64_t offset = std::max(enc.begin[i], answer) - answer;
    const int64_t a = header_id >= 0 ? at(token_at_byte(enc, header_id + offset)) : -1;
    if (a >= 0 || value_last >= 0) {
      add_read(out, row, query, a, value_last, first_piece);
    } else {
      out.end_row.push_back(row);
      out.end_query.push_back(query);
    }
    first_piece = false;
  });
}

eval::CaseSpec training_case_spec(std::mt19937_64& rng, const std::string& mix, std::pair<int64_t, int64_t> key_digits) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  eval::CaseSpec spec;
  spec.key_digits_min = key_digits.first;
  spec.key_digits_max = key_digits.second;
  if (mix == "passkey" || mix == "composed") {
    spec.wordings = eval::parse_wordings("trained", false);
    spec.composed = mix == "composed";
    return spec;
  }
  // "all", "composed-any", "facts", "composed-facts" and "composed-all" (digit keys only, at most
  // 6 facts) draw in the same order.
  const bool digits_only = mix == "facts" || mix == "composed-facts" || mix == "composed-all";
  const bool composed_mix = mix == "composed-facts" || mix == "composed-all" || mix == "composed-any";
  const double kind = digits_only ? 0.0 : unit(rng);
  spec.key_kind = kind < 0.7 ? eval::KeyKind::Digits : kind < 0.85 ? eval::KeyKind::Word : eval::KeyKind::Name;
  spec.facts = unit(rng) < 0.5 ? 1 : std::uniform_int_distribution<int64_t>(2, digits_only ? 6 : 8)(rng);
  spec.wordings = eval::parse_wordings("trained", spec.facts > 1);
  spec.distractors = spec.key_kind == eval::KeyKind::Digits && unit(rng) < 0.5 ? std::uniform_int_distribution<int64_t>(1, 4)(rng) : 0;
  // "composed-facts" composes single keys' wordings only; "composed-all" and "composed-any" also
  // half the wordings with labelled facts (a draw only those mixes make, so the others' rows stay
  // as they were).
  spec.composed = composed_mix && spec.facts == 1;
  if ((mix == "composed-all" || mix == "composed-any") && spec.facts > 1) spec.composed = unit(rng) < 0.5;
  return spec;
}

int64_t passkey_example_tokens(const TrainOptions& o, int64_t row_tokens, uint64_t random) {
  const int64_t L = row_tokens;
  const int64_t min_len = o.passkey_min_tokens > 0 ? std::min<int64_t>(o.passkey_min_tokens, L - 25)
                                                   : std::max<int64_t>(64, std::min<int64_t>(256, L / 2));
  return min_len + static_cast<int64_t>(random % static_cast<uint64_t>(std::max<int64_t>(1, L - 24 - min_len)));
}

namespace {

// The blind span of one value whose copies in the prompt begin at bytes first and second (-1: none).
std::pair<int64_t, int64_t> value_span(int64_t first, int64_t second, int64_t value_bytes, const Encoding& enc,
                                       int64_t row_length, int64_t margin) {
  if (first < 0) return {0, 0};
  const int64_t last_byte = (second >= 0 ? second : first) + value_bytes - 1;
  const int64_t begin_token = token_at_byte(enc, first);
  const int64_t end_token = token_at_byte(enc, last_byte);
  if (begin_token < 0 || end_token < 0) return {0, 0};
  const int64_t shift = row_length - static_cast<int64_t>(enc.ids.size());  // token i sits at row position i + shift
  const int64_t begin = std::max<int64_t>(0, begin_token + shift);
  const int64_t end = std::min<int64_t>(row_length, end_token + shift + 1 + std::max<int64_t>(0, margin));
  return end > begin ? std::pair<int64_t, int64_t>{begin, end} : std::pair<int64_t, int64_t>{0, 0};
}

}  // namespace

std::pair<int64_t, int64_t> blind_needle_span(const eval::PasskeyCase& c, const Encoding& enc, int64_t row_length,
                                              int64_t margin) {
  const auto [first, second] = needle_key_copies(c);
  return value_span(first, second, static_cast<int64_t>(c.key.size()), enc, row_length, margin);
}

std::vector<std::pair<int64_t, int64_t>> blind_needle_spans(const eval::PasskeyCase& c, const Encoding& enc,
                                                            int64_t row_length, int64_t margin, bool every_fact) {
  std::vector<std::pair<int64_t, int64_t>> out;
  auto keep = [&](std::pair<int64_t, int64_t> span) {
    if (span.second > span.first) out.push_back(span);
  };
  if (!every_fact || c.needles.size() < 2) {
    keep(blind_needle_span(c, enc, row_length, margin));
    return out;
  }
  for (const eval::NeedleInfo& needle : c.needles) {
    const auto [first, second] = first_two(eval::mentions(c.prompt, needle.value, needle.begin, needle.end));
    keep(value_span(first, second, static_cast<int64_t>(needle.value.size()), enc, row_length, margin));
  }
  return out;
}

std::string passkey_training_text(const eval::PasskeyCase& c, const std::string& answer_end) {
  return c.prompt + c.key + answer_end;
}

void append_follow_ups(const eval::PasskeyCase& c, const std::string& answer_end, std::mt19937_64& rng, std::string& text,
                       std::vector<FollowUp>& out) {
  if (c.needles.size() < 2) return;
  std::vector<size_t> order;
  for (size_t j = 0; j < c.needles.size(); ++j)
    if (static_cast<int64_t>(j) != c.asked) order.push_back(j);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t j : order) {
    text += eval::fact_question(c, j);
    out.push_back({static_cast<int64_t>(text.size()), j});
    text += c.needles[j].value + answer_end;
  }
}

void add_retrieval_targets(const eval::PasskeyCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                           RetrievalTargets& out, bool end_from_notes, const std::vector<FollowUp>& follow_ups,
                           bool after_end) {
  const auto at = row_positions(enc, row_length);
  // The row position of the needle piece `offset` bytes into a value's copy (-1 where cut off).
  auto in_copy = [&](int64_t copy, int64_t offset) { return copy >= 0 ? at(token_at_byte(enc, copy + offset)) : int64_t{-1}; };
  const bool labelled = c.needles.size() >= 2;
  // An answer that writes `value` from byte `answer` on, its needle's copies of the value at
  // bytes `first` and `second` (-1 where absent): each piece reads the piece of a copy that
  // holds the same bytes, then the answer's end.
  auto teach_answer = [&](int64_t answer, int64_t value_length, int64_t first, int64_t second) {
    bool first_piece = true;
    for_each_piece(enc, answer, answer + value_length, [&](int64_t i) {
      const int64_t offset = std::max(enc.begin[i], answer) - answer;
      const int64_t query = at(i) - 1;
      const int64_t a = in_copy(first, offset), b = in_copy(second, offset);
      if (query >= 0 && (a >= 0 || b >= 0)) add_read(out, row, query, a, b, labelled && first_piece);
      first_piece = false;
    });
    // The answer's end: the first piece that begins after the value (pieces are in text order).
    const auto after = std::lower_bound(enc.begin.begin(), enc.begin.end(), answer + value_length);
    if (after == enc.begin.end()) return;
    const int64_t end_query = at(after - enc.begin.begin()) - 1;
    if (end_query < 0) return;
    const int64_t a = end_from_notes ? in_copy(first, value_length) : -1, b = end_from_notes ? in_copy(second, value_length) : -1;
    if (a >= 0 || b >= 0) {
      add_read(out, row, end_query, a, b, false);
    } else {
      out.end_row.push_back(row);
      out.end_query.push_back(end_query);
    }
    // What follows the stop: the answer leaves the value once it has ended it.
    const auto next = after - enc.begin.begin() + 1;
    if (after_end && static_cast<size_t>(next) < enc.begin.size() && at(next) > 0) {
      out.end_row.push_back(row);
      out.end_query.push_back(at(next) - 1);
    }
  };
  // The values of the facts that were not asked, each token of their first mention.
  for (size_t j = 0; j < c.needles.size(); ++j) {
    const eval::NeedleInfo& needle = c.needles[j];
    if (static_cast<int64_t>(j) == c.asked) continue;
    const std::vector<int64_t> found = eval::mentions(c.prompt, needle.value, needle.begin, needle.end);
    if (found.empty()) continue;
    const int64_t value_begin = found.front(), value_end = value_begin + static_cast<int64_t>(needle.value.size());
    for_each_piece(enc, value_begin, value_end, [&](int64_t i) {
      const int64_t pos = at(i);
      if (pos < 0) return;
      out.other_value_row.push_back(row);
      out.other_value_position.push_back(pos);
    });
  }
  const auto [first, second] = needle_key_copies(c);
  teach_answer(static_cast<int64_t>(c.prompt.size()), static_cast<int64_t>(c.key.size()), first, second);
  for (const FollowUp& f : follow_ups) {
    const eval::NeedleInfo& needle = c.needles.at(f.needle);
    const auto [copy, again] = first_two(eval::mentions(c.prompt, needle.value, needle.begin, needle.end));
    teach_answer(f.answer, static_cast<int64_t>(needle.value.size()), copy, again);
  }
}

}  // namespace memmamba
