#include "model/eval/passkey.h"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <random>
#include <stdexcept>

namespace memmamba::eval {

namespace {

const char* kFiller = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

// Values and labels are drawn from these lists; names are made of syllables so that no book
// holds them.
const char* const kWords[] = {
    "lantern", "harbor",  "violet",  "marble", "thistle", "copper",  "falcon", "meadow",  "cobalt",  "saffron",
    "juniper", "walnut",  "pebble",  "anchor", "orchid",  "quartz",  "almond", "willow",  "tundra",  "canyon",
    "glacier", "lotus",   "raven",   "cedar",  "amber",   "coral",   "plume",  "sparrow", "ivory",   "opal",
    "basil",   "comet",   "maple",   "nectar", "oasis",   "pewter",  "quill",  "rhubarb", "sable",   "tulip",
    "velvet",  "wren",    "yarrow",  "zephyr", "badger",  "bramble", "fennel", "garnet",  "hazel",   "indigo",
    "jasper",  "kestrel", "lichen",  "mosaic", "nutmeg",  "otter",   "parsnip", "quince", "russet",  "thimble"};
const char* const kSyllables[] = {"ka", "ro", "mi", "zel", "tor", "van", "li", "bra", "dun", "el", "fi", "gor",
                                  "ha", "is", "jun", "ke", "lo", "mar", "nel", "os", "pa", "qui", "ru", "sa",
                                  "tev", "ul", "vor", "wyn", "xa", "yel", "zo", "bel"};
const char* const kColours[] = {"red", "blue", "green", "yellow", "black", "white", "silver", "golden", "purple", "orange", "grey", "brown"};
const char* const kObjects[] = {"door", "box", "gate", "chest", "drawer", "lamp", "boat", "wagon",
                                "bottle", "basket", "clock", "bell", "ladder", "kettle", "trunk", "cabinet"};
const char* const kDistractors[] = {"The number {n} was painted on a post by the road. ",
                                    "Someone had written {n} on the back of an old letter. ",
                                    "The ledger showed {n} at the bottom of the page. "};
const char* const kHeadings[] = {"Chapter ", "CHAPTER ", "Book ", "BOOK ", "Section ", "Note "};

template <size_t N>
const char* pick(const char* const (&list)[N], std::mt19937_64& rng) {
  return list[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}

std::string with_capital(std::string text) {
  if (!text.empty()) text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
  return text;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  return text;
}

std::string fill_wording(const char* pattern, const std::string& key, const std::string& label) {
  return replace_all(replace_all(pattern, "{key}", key), "{label}", label);
}

// `sentence` with a reference mark of number `n` (CaseSpec::reference_marks) in one of the forms
// books print them, and the byte offset of the number in the result.
std::pair<std::string, size_t> with_reference_mark(const std::string& sentence, const std::string& n, std::mt19937_64& rng) {
  switch (std::uniform_int_distribution<int>(0, 6)(rng)) {
    case 0: return {sentence + "(" + n + ")", sentence.size() + 1};  // a footnote: "poetry.(3)"
    case 1: return {sentence + " [" + n + "]", sentence.size() + 2};
    case 2: {  // a footnote after a word inside the sentence: "Shakespere(1) have"
      std::vector<size_t> spaces;
      for (size_t k = 0; k < sentence.size(); ++k)
        if (sentence[k] == ' ') spaces.push_back(k);
      if (spaces.empty()) return {sentence + "(" + n + ")", sentence.size() + 1};
      const size_t at = spaces[std::uniform_int_distribution<size_t>(0, spaces.size() - 1)(rng)];
      return {sentence.substr(0, at) + "(" + n + ")" + sentence.substr(at), at + 1};
    }
    case 3: return {n + ". " + sentence, 0};  // a numbered paragraph or verse
    case 4: return {n + " " + sentence, 0};   // a line number
    case 5: return {sentence + " [p. " + n + "]", sentence.size() + 5};  // a page break
    default: {
      const std::string head = pick(kHeadings, rng);
      return {head + n + ". " + sentence, head.size()};
    }
  }
}

std::string digits_of_length(int64_t n, std::mt19937_64& rng) {
  std::string s(1, static_cast<char>('1' + std::uniform_int_distribution<int>(0, 8)(rng)));
  for (int64_t i = 1; i < n; ++i) s += static_cast<char>('0' + std::uniform_int_distribution<int>(0, 9)(rng));
  return s;
}

std::string draw_value(const CaseSpec& spec, std::mt19937_64& rng) {
  switch (spec.key_kind) {
    case KeyKind::Word: return pick(kWords, rng);
    case KeyKind::Name: {
      std::string name;
      const int parts = std::uniform_int_distribution<int>(2, 3)(rng);
      for (int i = 0; i < parts; ++i) name += pick(kSyllables, rng);
      return with_capital(name);
    }
    case KeyKind::Digits: break;
  }
  const int64_t n = std::uniform_int_distribution<int64_t>(spec.key_digits_min, spec.key_digits_max)(rng);
  return digits_of_length(n, rng);
}

bool overlaps(const std::string& a, const std::vector<std::string>& others) {
  for (const std::string& o : others)
    if (a.find(o) != std::string::npos || o.find(a) != std::string::npos) return true;
  return false;
}

// `value` with a run of the key's last 2-3 digits written into it, with at least one digit after
// the run (CaseSpec::look_alikes): an answer that goes on from where its digits match another
// value's reads on into this one. `value` unchanged where it or the key is too short, or where
// every try would make it contain another value or be contained in one.
std::string look_alike(const std::string& value, const std::string& key, const std::vector<std::string>& others,
                       std::mt19937_64& rng) {
  const auto is_digits = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  };
  if (!is_digits(value) || !is_digits(key)) return value;
  for (int attempt = 0; attempt < 20; ++attempt) {
    const size_t run = std::min<size_t>({static_cast<size_t>(std::uniform_int_distribution<int>(2, 3)(rng)), key.size() - 1,
                                         value.size() - 1});
    if (run < 2) return value;
    const std::string tail = key.substr(key.size() - run);
    const size_t first = tail[0] == '0' ? 1 : 0;  // a value never starts with 0
    if (first + run >= value.size()) return value;
    const size_t at = std::uniform_int_distribution<size_t>(first, value.size() - run - 1)(rng);
    std::string alike = value;
    alike.replace(at, run, tail);
    if (!overlaps(alike, others)) return alike;
  }
  return value;
}

// The parts of composed wordings (CaseSpec::composed). The held-out wordings' nouns (access
// code, magic word) and their needle and question forms are not among them.
const char* const kComposedNouns[] = {"pass key",       "secret code",   "password",   "special number", "combination",
                                      "PIN",            "serial number", "lucky number", "ticket number", "reference number",
                                      "vault code",     "code word",     "registration number", "personal number"};
const char* const kComposedInstructions[] = {
    "There is an important {n} hidden inside a lot of irrelevant text. Find it and memorize it:\n",
    "Somewhere in this long text there is a {n}. Read carefully and remember it:\n",
    "The text below hides a {n}. Memorize it:\n",
    "A {n} appears once in the following pages. You will be asked for it:\n",
    "Read the passage and keep the {n} in mind:\n",
    "Find the {n} in the text that follows:\n"};
const char* const kComposedNeedles[] = {"The {n} is {key}. ",
                                        "The {n} is {key}. Remember it. {key} is the {n}. ",
                                        "Remember this {n}: {key}. ",
                                        "Here is the {n} you must remember: {key}. ",
                                        "Please keep the {n} in mind, it is {key}. ",
                                        "Write this down, the {n} is {key}. ",
                                        "{N}: {key}. ",
                                        "I will only say this once: the {n} is {key}. "};
const char* const kComposedQuestions[] = {"\nWhat is the {n}?\nAnswer: ",        "\nWhich {n} were you asked to remember?\nAnswer: ",
                                          "\nGive the {n}.\nAnswer: ",           "\nRecall the {n}.\nAnswer: ",
                                          "\nWhat {n} was given in the text?\nAnswer: ", "\nPlease state the {n}.\nAnswer: "};

// The parts of composed wordings with labelled facts. Every needle names its label before its
// value: the memory sees only what came before a note, so a value's note can hold its label
// only if the label came first. The held-out fact wording's verb ("marked") and its question
// form ("How is ...") are not among them.
const char* const kFactNouns[] = {"code", "number", "value", "figure", "tag", "ID", "reference", "serial"};
const char* const kFactInstructions[] = {
    "Several {n}s are hidden in the text below. Remember each one:\n",
    "The following text gives a {n} to each of several things. Keep track of them:\n",
    "Read the passage. It pairs things with {n}s:\n",
    "Some things below come with a {n}. You will be asked for one of them:\n"};
const char* const kFactNeedles[] = {"The {n} of the {label} is {key}. ",       "The {label} has the {n} {key}. ",
                                    "For the {label}, the {n} is {key}. ",      "Remember the {label}: its {n} is {key}. ",
                                    "Here is the {n} for the {label}: {key}. ", "The {label} goes with the {n} {key}. "};
const char* const kFactQuestions[] = {"\nWhat is the {n} of the {label}?\nAnswer: ", "\nWhich {n} does the {label} have?\nAnswer: ",
                                      "\nGive the {n} for the {label}.\nAnswer: ",   "\nWhat {n} was given for the {label}?\nAnswer: ",
                                      "\nRecall the {label}'s {n}.\nAnswer: "};

// Verb forms of labelled facts: the fact is said with a verb rather than a noun, and a
// question may name neither, so that the answer is learned as "the value said with this label",
// not as the word after a template. None uses the held-out verb or question form either.
const char* const kFactVerbs[] = {"labelled",    "tagged",      "numbered",   "stamped",      "coded",      "listed as",
                                  "registered as", "known as",  "filed under", "written down as", "signed",  "sealed with",
                                  "engraved with", "printed with", "recorded as", "entered as", "logged as", "priced at",
                                  "valued at",   "rated",       "scored",     "ranked",       "counted as", "assigned",
                                  "given",       "set to",      "fixed at",   "locked with",  "keyed to",   "painted with",
                                  "noted as",    "kept under",  "shelved as", "indexed as",   "booked as",  "called"};
const char* const kFactVerbInstructions[] = {
    "Remember what each thing below is {v}:\n", "The text below says what several things are {v}. Keep track of them:\n",
    "Read carefully; you will be asked about one of the things below:\n"};
const char* const kFactVerbNeedles[] = {"The {label} is {v} {key}. ", "Remember that the {label} was {v} {key}. ",
                                        "Keep in mind: the {label} is {v} {key}. ", "In the records the {label} is {v} {key}. "};
const char* const kFactVerbQuestions[] = {"\nWhat is the {label} {v}?\nAnswer: ", "\nWhat was the {label} {v}?\nAnswer: ",
                                          "\nSay what the {label} is {v}.\nAnswer: "};
const char* const kFactBareQuestions[] = {"\nWhat about the {label}?\nAnswer: ", "\nAnd the {label}?\nAnswer: ",
                                          "\nWhat was said of the {label}?\nAnswer: "};
// Words a scrambled question is made of: a line of them around "the {label}" asks as well as
// any sentence does, so the answer comes from the label, whatever the question's words.
const char* const kFactQuestionWords[] = {"what", "which", "was", "is", "for", "about", "do", "you", "know", "remember",
                                          "did", "we", "say", "of", "with", "given", "to", "it", "now", "then",
                                          "so", "again", "tell", "me", "please", "its", "one", "that", "there", "written"};

struct ComposedWording {
  std::string instruction, needle, question;
};

// Parts of the held-out wordings that no haystack word may carry into a training row: the
// fact wording's verb and the held-out passkey needles' own words.
const char* const kHeldOutWordParts[] = {"marked", "magic", "forget", "access"};

// A word of the haystack's own text (letters only, lower case), never a held-out word: as the
// verb of a needle it teaches that the word before a value may be any word.
std::string haystack_word(const std::vector<std::string>& sentences, std::mt19937_64& rng) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string& sentence = sentences[std::uniform_int_distribution<size_t>(0, sentences.size() - 1)(rng)];
    std::vector<std::string> words;
    size_t begin = 0;
    while (begin < sentence.size()) {
      size_t end = sentence.find(' ', begin);
      if (end == std::string::npos) end = sentence.size();
      std::string word = sentence.substr(begin, end - begin);
      begin = end + 1;
      while (!word.empty() && (word.back() == ',' || word.back() == '.' || word.back() == ';')) word.pop_back();
      const bool lower_letters = std::all_of(word.begin(), word.end(), [](char ch) { return ch >= 'a' && ch <= 'z'; });
      const bool held_out = std::any_of(std::begin(kHeldOutWordParts), std::end(kHeldOutWordParts),
                                        [&](const char* part) { return word.find(part) != std::string::npos; });
      if (lower_letters && word.size() >= 3 && word.size() <= 12 && !held_out) words.push_back(word);
    }
    if (!words.empty()) return words[std::uniform_int_distribution<size_t>(0, words.size() - 1)(rng)];
  }
  return pick(kFactVerbs, rng);
}

// A wording with labelled facts put together from parts; {label} and {key} stay placeholders.
// Half the wordings say the facts with a noun, half with a verb (a third of those a word of the
// haystack in the verb's place: "the red door is harbour 4821"); a quarter of the questions
// name neither, and a quarter are scrambled: a few random question words around the label.
ComposedWording composed_fact_wording(const std::vector<std::string>& sentences, std::mt19937_64& rng) {
  const bool with_verb = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  const bool any_word = with_verb && std::uniform_int_distribution<int>(0, 2)(rng) == 0;
  const std::string word = any_word ? haystack_word(sentences, rng) : with_verb ? pick(kFactVerbs, rng) : pick(kFactNouns, rng);
  auto fill = [&](const char* pattern) { return replace_all(pattern, with_verb ? "{v}" : "{n}", word); };
  ComposedWording w;
  w.instruction = fill(with_verb ? pick(kFactVerbInstructions, rng) : pick(kFactInstructions, rng));
  w.needle = fill(with_verb ? pick(kFactVerbNeedles, rng) : pick(kFactNeedles, rng));
  const int question_kind = std::uniform_int_distribution<int>(0, 3)(rng);
  if (question_kind == 0) {
    w.question = pick(kFactBareQuestions, rng);
  } else if (question_kind == 1) {
    auto words = [&](int from, int to) {
      std::string text;
      for (int n = std::uniform_int_distribution<int>(from, to)(rng); n > 0; --n) text += std::string(" ") + pick(kFactQuestionWords, rng);
      return text;
    };
    // The words after the label are drawn first: the order the rows were trained with, fixed
    // here because the operands of one expression may be evaluated in any order.
    const std::string after_label = words(0, 2);
    const std::string before_label = words(2, 5);
    w.question = "\n" + with_capital(before_label.substr(1)) + " the {label}" + after_label + "?\nAnswer: ";
  } else {
    w.question = fill(with_verb ? pick(kFactVerbQuestions, rng) : pick(kFactQuestions, rng));
  }
  return w;
}

ComposedWording composed_wording(std::mt19937_64& rng) {
  const std::string noun = pick(kComposedNouns, rng);
  const std::string capital = with_capital(noun);
  auto fill = [&](const char* pattern) { return replace_all(replace_all(pattern, "{n}", noun), "{N}", capital); };
  ComposedWording w;
  w.instruction = fill(pick(kComposedInstructions, rng));
  w.needle = fill(pick(kComposedNeedles, rng));
  w.question = fill(pick(kComposedQuestions, rng));
  return w;
}

}  // namespace

std::string PasskeyGenerator::needle(const std::string& key) { return fill_wording(passkey_wordings()[0].needle, key, ""); }
const char* PasskeyGenerator::instruction() { return passkey_wordings()[0].instruction; }
const char* PasskeyGenerator::question() { return passkey_wordings()[0].question; }

std::vector<int64_t> mentions(const std::string& prompt, const std::string& value, int64_t begin, int64_t end) {
  std::vector<int64_t> at;
  if (value.empty() || begin < 0) return at;
  for (size_t i = prompt.find(value, static_cast<size_t>(begin));
       i != std::string::npos && static_cast<int64_t>(i + value.size()) <= end; i = prompt.find(value, i + value.size()))
    at.push_back(static_cast<int64_t>(i));
  return at;
}

std::vector<int64_t> key_mentions(const PasskeyCase& c) { return mentions(c.prompt, c.key, c.needle_begin, c.needle_end); }

std::string fact_question(const PasskeyCase& c, size_t needle) {
  const bool listed = c.wording >= 0 && c.wording < static_cast<int64_t>(fact_wordings().size());
  if (c.needles.size() < 2 || needle >= c.needles.size() || (!listed && c.question_form.empty()))
    throw std::invalid_argument("fact_question: the case has no labelled fact " + std::to_string(needle));
  const std::string form = !c.question_form.empty() ? c.question_form : fact_wordings()[static_cast<size_t>(c.wording)].question;
  return fill_wording(form.c_str(), "", c.needles[needle].label);
}

std::vector<std::string> split_sentences(const std::string& text, int64_t min_words) {
  std::vector<std::string> out;
  std::string current;
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (space) {
      if (!current.empty() && current.back() != ' ') current += ' ';
      in_word = false;
      continue;
    }
    if (!in_word) ++words;
    in_word = true;
    current += c;
    const bool end = (c == '.' || c == '!' || c == '?') &&
                     (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n');
    if (end) {
      if (words >= min_words) out.push_back(current);
      current.clear();
      words = 0;
    }
  }
  return out;
}

PasskeyGenerator::PasskeyGenerator(const Tokenizer& tokenizer, std::vector<std::string> sentences, Haystack haystack)
    : tokenizer_(tokenizer), sentences_(std::move(sentences)), haystack_(haystack) {
  if (haystack_ == Haystack::RepeatedFiller) sentences_ = split_sentences(kFiller, 1);
  if (sentences_.empty()) throw std::invalid_argument("passkey: no haystack sentences (the book has none of 5+ words)");
  sentence_tokens_.reset(new std::atomic<int64_t>[sentences_.size()]);
  for (size_t i = 0; i < sentences_.size(); ++i) sentence_tokens_[i].store(-1, std::memory_order_relaxed);
}

int64_t PasskeyGenerator::tokens_of(size_t i) const {
  // Counted as the sentence appears mid-text: after a space.
  std::atomic<int64_t>& cached = sentence_tokens_[i];
  int64_t n = cached.load(std::memory_order_relaxed);
  if (n < 0) {
    n = tokens_of_text(sentences_[i] + " ");
    cached.store(n, std::memory_order_relaxed);
  }
  return n;
}

int64_t PasskeyGenerator::tokens_of_text(const std::string& text) const {
  return static_cast<int64_t>(tokenizer_.encode(text).ids.size());
}

PasskeyCase PasskeyGenerator::make(int64_t target_tokens, double depth, uint64_t seed, const CaseSpec& spec,
                                   const std::string& forced_key) const {
  if (target_tokens < 64) throw std::invalid_argument("passkey: a prompt needs at least 64 tokens");
  if (!(depth >= 0.0 && depth <= 1.0)) throw std::invalid_argument("passkey: depth must be in [0, 1]");
  if (spec.facts < 1 || spec.wordings.empty()) throw std::invalid_argument("passkey: a case needs a fact and a wording");
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(target_tokens) * 31 +
                      static_cast<uint64_t>(depth * 1000));
  PasskeyCase c;
  c.depth = depth;
  c.target_tokens = target_tokens;
  const bool facts = spec.facts > 1;
  const bool legacy = spec.key_digits_min == 0 && spec.key_kind == KeyKind::Digits;
  // Draws in a fixed order; the legacy spec draws exactly what the first grids drew.
  c.wording = legacy && !facts && spec.wordings.size() == 1
                  ? spec.wordings[0]
                  : spec.wordings[std::uniform_int_distribution<size_t>(0, spec.wordings.size() - 1)(rng)];
  Wording wording = (facts ? fact_wordings() : passkey_wordings()).at(static_cast<size_t>(c.wording));
  ComposedWording composed;
  if (spec.composed) {
    composed = facts ? composed_fact_wording(sentences_, rng) : composed_wording(rng);
    wording = {"composed", composed.instruction.c_str(), composed.needle.c_str(), composed.question.c_str(), false};
    c.wording = -1;
  }
  c.question_form = wording.question;
  std::vector<std::string> values, labels;
  for (int64_t f = 0; f < spec.facts; ++f) {
    std::string v;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      v = legacy ? std::to_string(std::uniform_int_distribution<int64_t>(0, 99999)(rng)) : draw_value(spec, rng);
      if (!overlaps(v, values)) break;
    }
    values.push_back(v);
    if (facts) {
      std::string label;
      for (int attempt = 0; attempt < 1000; ++attempt) {
        label = std::string(pick(kColours, rng)) + " " + pick(kObjects, rng);
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) break;
      }
      labels.push_back(label);
    }
  }
  const int64_t asked = facts ? std::uniform_int_distribution<int64_t>(0, spec.facts - 1)(rng) : 0;
  if (!forced_key.empty()) values[static_cast<size_t>(asked)] = forced_key;
  c.key = values[static_cast<size_t>(asked)];
  // Look-alike numbers draw from a stream of their own, so that a spec without them gives the
  // cases it always gave.
  std::mt19937_64 alike_rng(seed ^ 0x5BD1E9955BD1E995ull);
  const auto made_alike = [&](size_t at) {
    if (spec.look_alikes <= 0 || std::uniform_real_distribution<double>(0.0, 1.0)(alike_rng) >= spec.look_alikes) return;
    std::vector<std::string> others = values;
    others.erase(others.begin() + static_cast<std::ptrdiff_t>(at));
    values[at] = look_alike(values[at], c.key, others, alike_rng);
  };
  for (size_t f = 0; f < values.size(); ++f)
    if (static_cast<int64_t>(f) != asked) made_alike(f);
  // What goes into the haystack besides its sentences: the needles, then the distractors.
  struct Insert {
    std::string text;
    double depth;
    int64_t needle;  // index into values, or -1 for a distractor
  };
  std::vector<Insert> inserts;
  for (int64_t f = 0; f < spec.facts; ++f) {
    const double d = f == asked ? depth : std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    inserts.push_back({fill_wording(wording.needle, values[f], facts ? labels[f] : ""), d, f});
  }
  for (int64_t k = 0; k < spec.distractors; ++k) {
    std::string n;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      n = digits_of_length(static_cast<int64_t>(std::max<size_t>(1, c.key.size())), rng);
      if (!overlaps(n, values)) break;
    }
    values.push_back(n);  // kept out of the haystack's sentences too
    made_alike(values.size() - 1);
    n = values.back();
    inserts.push_back({replace_all(pick(kDistractors, rng), "{n}", n), std::uniform_real_distribution<double>(0.0, 1.0)(rng), -1});
  }
  const std::string question = fill_wording(wording.question, "", facts ? labels[static_cast<size_t>(asked)] : "");
  int64_t fixed = tokens_of_text(wording.instruction) + tokens_of_text(question);
  for (const Insert& in : inserts) fixed += tokens_of_text(in.text);
  const int64_t budget = std::max<int64_t>(0, target_tokens - fixed);
  // The case's rate of reference marks is drawn from [0, twice the spec's], from a stream of its
  // own so that marks change nothing else about the case; their numbers count up from a random
  // start, as a book's footnotes do.
  const bool marking = spec.reference_marks > 0;
  std::mt19937_64 mark_rng(marking ? seed ^ 0x3A2C5E7F1D9B4863ull : 0);
  const double mark_rate = marking ? std::uniform_real_distribution<double>(0.0, 2.0 * spec.reference_marks)(mark_rng) : 0.0;
  int64_t mark_number = marking ? std::uniform_int_distribution<int64_t>(1, 300)(mark_rng) : 0;
  // Haystack: consecutive sentences from a random start (wrapping around the book); the
  // last one is cut at a word boundary so that the prompt meets the length.
  std::vector<std::string> chosen;
  std::vector<int64_t> chosen_tokens;
  std::vector<std::pair<int64_t, int64_t>> chosen_mark;  // the byte range of its mark's number, or {-1, -1}
  int64_t used = 0;
  size_t at = haystack_ == Haystack::RepeatedFiller ? 0 : std::uniform_int_distribution<size_t>(0, sentences_.size() - 1)(rng);
  auto clashes = [&](const std::string& sentence) {
    for (const std::string& v : values)
      if (sentence.find(v) != std::string::npos) return true;  // a value must occur only in its needle
    for (const std::string& l : labels)
      if (sentence.find(l) != std::string::npos) return true;
    return false;
  };
  const size_t max_steps = sentences_.size() + static_cast<size_t>(budget) + 1;
  for (size_t step = 0; used < budget && step < max_steps; ++step) {
    const size_t i = at++ % sentences_.size();
    if (clashes(sentences_[i])) continue;
    const int64_t n = tokens_of(i);
    if (marking && std::uniform_real_distribution<double>(0.0, 1.0)(mark_rng) < mark_rate * static_cast<double>(n) / 1000.0) {
      const std::string number = std::to_string(mark_number++);
      auto [text, mark_at] = with_reference_mark(sentences_[i], number, mark_rng);
      const int64_t marked_tokens = tokens_of_text(text + " ");
      if (!clashes(text) && used + marked_tokens <= budget) {
        chosen.push_back(std::move(text));
        chosen_tokens.push_back(marked_tokens);
        chosen_mark.push_back({static_cast<int64_t>(mark_at), static_cast<int64_t>(mark_at + number.size())});
        used += marked_tokens;
        continue;
      }
    }
    if (used + n <= budget) {
      chosen.push_back(sentences_[i]);
      chosen_tokens.push_back(n);
      chosen_mark.push_back({-1, -1});
      used += n;
      continue;
    }
    // The longest word prefix that fits.
    std::vector<size_t> word_ends;
    for (size_t k = 0; k < sentences_[i].size(); ++k)
      if (sentences_[i][k] == ' ') word_ends.push_back(k);
    size_t lo = 0, hi = word_ends.size();
    int64_t lo_tokens = 0;
    while (lo < hi) {
      const size_t mid = (lo + hi + 1) / 2;
      const int64_t t = tokens_of_text(sentences_[i].substr(0, word_ends[mid - 1]) + " ");
      if (used + t <= budget) { lo = mid; lo_tokens = t; } else { hi = mid - 1; }
    }
    if (lo > 0) {
      chosen.push_back(sentences_[i].substr(0, word_ends[lo - 1]));
      chosen_tokens.push_back(lo_tokens);
      chosen_mark.push_back({-1, -1});
      used += lo_tokens;
    }
    break;
  }
  // Each insert goes at the sentence boundary nearest to its depth x haystack tokens.
  std::vector<int64_t> before_boundary(chosen.size() + 1, 0);
  for (size_t k = 0; k < chosen.size(); ++k) before_boundary[k + 1] = before_boundary[k] + chosen_tokens[k];
  auto boundary_of = [&](double d) {
    const double wanted = d * static_cast<double>(used);
    size_t boundary = 0;
    double best = wanted;
    for (size_t k = 0; k < chosen.size(); ++k) {
      const double distance = std::abs(static_cast<double>(before_boundary[k + 1]) - wanted);
      if (distance < best) { best = distance; boundary = k + 1; }
    }
    return boundary;
  };
  std::vector<size_t> order(inserts.size()), boundary(inserts.size());
  for (size_t i = 0; i < inserts.size(); ++i) boundary[i] = boundary_of(inserts[i].depth);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return boundary[a] != boundary[b] ? boundary[a] < boundary[b] : inserts[a].depth < inserts[b].depth;
  });
  std::string prompt = wording.instruction;
  size_t next = 0;
  for (size_t k = 0; k <= chosen.size(); ++k) {
    for (; next < order.size() && boundary[order[next]] == k; ++next) {
      const Insert& in = inserts[order[next]];
      if (in.needle >= 0) {
        NeedleInfo n;
        n.label = facts ? labels[static_cast<size_t>(in.needle)] : "";
        n.value = values[static_cast<size_t>(in.needle)];
        n.depth = in.depth;
        n.actual_depth = used > 0 ? static_cast<double>(before_boundary[k]) / static_cast<double>(used) : 0.0;
        n.begin = static_cast<int64_t>(prompt.size());
        n.end = n.begin + static_cast<int64_t>(in.text.size()) - 1;  // without the trailing space
        if (in.needle == asked) {
          c.asked = static_cast<int64_t>(c.needles.size());
          c.needle_begin = n.begin;
          c.needle_end = n.end;
          c.actual_depth = n.actual_depth;
          c.sentence_index = static_cast<int64_t>(k);
        }
        c.needles.push_back(std::move(n));
      }
      prompt += in.text;
    }
    if (k == chosen.size()) continue;
    if (chosen_mark[k].first >= 0) {
      const auto begin = static_cast<int64_t>(prompt.size());
      c.marks.push_back({begin + chosen_mark[k].first, begin + chosen_mark[k].second});
    }
    prompt += chosen[k] + " ";
  }
  prompt += question;
  c.prompt = std::move(prompt);
  return c;
}

}  // namespace memmamba::eval
