#include "model/eval/retrieval_case.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace memmamba::eval {

namespace {
// Leading and trailing characters that are not letters or digits.
std::pair<size_t, size_t> trimmed(const std::string& w) {
  size_t b = 0, e = w.size();
  while (b < e && !std::isalnum(static_cast<unsigned char>(w[b]))) ++b;
  while (e > b && !std::isalnum(static_cast<unsigned char>(w[e - 1]))) --e;
  return {b, e};
}

}  // namespace

const std::vector<Wording>& passkey_wordings() {
  static const std::vector<Wording> w = {
      {"pass key", "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it:\n",
       "The pass key is {key}. Remember it. {key} is the pass key. ", "\nWhat is the pass key?\nAnswer: ", false},
      {"secret code", "A secret code is hidden somewhere in the text below. Find it and remember it:\n",
       "The secret code is {key}. Keep it in mind: {key}. ", "\nWhat is the secret code?\nAnswer: ", false},
      {"password", "Somewhere in this long text there is a password. Read carefully and remember it:\n",
       "Here is the password you must remember: {key}. ", "\nWhich password were you asked to remember?\nAnswer: ", false},
      {"special number", "Read the text below. One sentence gives a special value to remember:\n",
       "Remember this special value: {key}. The special value is {key}. ", "\nWhat is the special value?\nAnswer: ", false},
      {"combination", "The following text hides a combination. Memorize it:\n", "The combination for the lock is {key}. ",
       "\nWhat is the combination for the lock?\nAnswer: ", false},
      {"access code (held out)", "Hidden in the story below is an access code. Make a note of it:\n",
       "Take note: the access code is {key}, and only {key}. ", "\nTell me the access code.\nAnswer: ", true},
      {"magic word (held out)", "There is a magic word somewhere in this text. Do not forget it:\n",
       "The magic word, which you must not forget, is {key}. ", "\nWhat was the magic word?\nAnswer: ", true},
      // More trained wordings (after the held-out two, so that every index above keeps its wording).
      {"PIN", "Somewhere below is a PIN. Keep it safe in your memory:\n", "My PIN is {key}. Again, the PIN is {key}. ",
       "\nWhat is the PIN?\nAnswer: ", false},
      {"serial number", "This document contains a serial number among much other text. Look for it:\n",
       "Serial number: {key}. ", "\nGive the serial number.\nAnswer: ", false},
      {"lucky number", "Someone mentions a lucky number in the passage below. Keep it in mind:\n",
       "Her lucky number was {key}. ", "\nWhat was her lucky number?\nAnswer: ", false},
      {"ticket", "A ticket number appears in the following text. You will be asked for it:\n",
       "The number on the ticket is {key}, so keep the ticket. ", "\nWhat number is on the ticket?\nAnswer: ", false},
      {"room", "Read on and note the room number when it appears:\n",
       "They stayed in room {key}. Room {key} was on the top floor. ", "\nWhich room did they stay in?\nAnswer: ", false},
      {"reference", "The text that follows quotes one reference number. Recall it at the end:\n",
       "Please quote reference {key} in all letters. ", "\nRecall the reference you were told to quote.\nAnswer: ", false},
      {"vault", "Hidden in these pages is the code that opens the vault:\n", "The vault opens with the code {key}. ",
       "\nWhat code opens the vault?\nAnswer: ", false},
  };
  return w;
}

const std::vector<Wording>& fact_wordings() {
  static const std::vector<Wording> w = {
      {"code for", "Several codes are hidden in the text below. Remember each one:\n", "The code for the {label} is {key}. ",
       "\nWhat is the code for the {label}?\nAnswer: ", false},
      {"has the value", "The text below gives values for different things. Keep track of them:\n",
       "Write down that the {label} has the value {key}. ", "\nWhich value does the {label} have?\nAnswer: ", false},
      {"belongs to", "Some things in this text are given names or numbers. Remember them:\n",
       "Remember: {key} belongs to the {label}. ", "\nWhat belongs to the {label}?\nAnswer: ", false},
      {"marked (held out)", "Facts are scattered through this text. Memorize them:\n", "Note that the {label} is marked {key}. ",
       "\nHow is the {label} marked?\nAnswer: ", true},
  };
  return w;
}

const char* key_kind_name(KeyKind kind) {
  switch (kind) {
    case KeyKind::Word: return "word";
    case KeyKind::Name: return "name";
    case KeyKind::Digits: break;
  }
  return "digits";
}

KeyKind parse_key_kind(const std::string& text) {
  if (text == "digits") return KeyKind::Digits;
  if (text == "word") return KeyKind::Word;
  if (text == "name") return KeyKind::Name;
  throw std::invalid_argument("key kind must be digits, word or name, not '" + text + "'");
}

std::pair<int64_t, int64_t> parse_key_digits(const std::string& text) {
  const size_t dash = text.find('-');
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 2 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw std::invalid_argument("key digits must be N or A-B with 1 <= A <= B <= 18, not '" + text + "'");
    return static_cast<int64_t>(std::stoi(s));
  };
  const int64_t a = number(text.substr(0, dash));
  const int64_t b = dash == std::string::npos ? a : number(text.substr(dash + 1));
  if (a < 1 || b > 18 || a > b) throw std::invalid_argument("key digits must be N or A-B with 1 <= A <= B <= 18, not '" + text + "'");
  return {a, b};
}

std::vector<int64_t> parse_wordings(const std::string& text, bool facts) {
  const std::vector<Wording>& all = facts ? fact_wordings() : passkey_wordings();
  std::vector<int64_t> out;
  if (text == "trained" || text == "held-out" || text == "all") {
    for (size_t i = 0; i < all.size(); ++i)
      if (text == "all" || all[i].held_out == (text == "held-out")) out.push_back(static_cast<int64_t>(i));
    return out;
  }
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    const bool digits = !part.empty() && part.size() <= 3 && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoul(part) >= all.size())
      throw std::invalid_argument("wording must be trained, held-out, all or indices 0-" + std::to_string(all.size() - 1) + ", not '" + text + "'");
    out.push_back(std::stoll(part));
  }
  if (out.empty()) throw std::invalid_argument("no wording given");
  return out;
}

CaseSpec CaseSpec::legacy() {
  CaseSpec s;
  s.key_digits_min = s.key_digits_max = 0;
  return s;
}

Json CaseSpec::to_json() const {
  Json j = Json::object();
  j["key_kind"] = std::string(key_kind_name(key_kind));
  Json digits = Json::array();
  digits.push_back(key_digits_min);
  digits.push_back(key_digits_max);
  j["key_digits"] = digits;
  Json w = Json::array();
  for (int64_t i : wordings) w.push_back(i);
  j["wordings"] = w;
  j["facts"] = facts;
  j["distractors"] = distractors;
  if (look_alikes > 0) j["look_alikes"] = look_alikes;  // absent: files from before it read the same
  return j;
}

CaseSpec CaseSpec::from_json(const Json& j) {
  try {
    CaseSpec s;
    s.key_kind = parse_key_kind(j.at("key_kind").as_string("key_kind"));
    const auto& digits = j.at("key_digits").as_array("key_digits");
    if (digits.size() != 2) throw std::invalid_argument("key_digits must be [min, max]");
    s.key_digits_min = digits[0].as_int("key_digits");
    s.key_digits_max = digits[1].as_int("key_digits");
    const bool legacy = s.key_digits_min == 0 && s.key_digits_max == 0;
    if (!legacy && (s.key_digits_min < 1 || s.key_digits_max > 18 || s.key_digits_min > s.key_digits_max))
      throw std::invalid_argument("key_digits must be within 1-18, min <= max");
    s.facts = j.at("facts").as_int("facts");
    if (s.facts < 1 || s.facts > 16) throw std::invalid_argument("facts must be 1-16");
    s.distractors = j.at("distractors").as_int("distractors");
    if (s.distractors < 0 || s.distractors > 64) throw std::invalid_argument("distractors must be 0-64");
    if (j.contains("look_alikes")) {
      s.look_alikes = j.at("look_alikes").as_double("look_alikes");
      if (!(s.look_alikes >= 0 && s.look_alikes <= 1)) throw std::invalid_argument("look_alikes must be within 0-1");
    }
    const size_t n = (s.facts > 1 ? fact_wordings() : passkey_wordings()).size();
    s.wordings.clear();
    for (const Json& w : j.at("wordings").as_array("wordings")) {
      const int64_t i = w.as_int("wording");
      if (i < 0 || static_cast<size_t>(i) >= n) throw std::invalid_argument("wording " + std::to_string(i) + " does not exist");
      s.wordings.push_back(i);
    }
    if (s.wordings.empty()) throw std::invalid_argument("no wordings");
    return s;
  } catch (const JsonError& e) {
    throw std::invalid_argument(std::string("case settings: ") + e.what());
  }
}

CaseSpec CaseSpec::of_results(const Json& results) {
  if (!results.is_object() || !results.contains("settings") || !results.at("settings").is_object() ||
      !results.at("settings").contains("case"))
    return legacy();
  return from_json(results.at("settings").at("case"));
}

std::string CaseSpec::describe() const {
  std::string s;
  if (facts > 1) s += std::to_string(facts) + " facts, ";
  if (key_kind != KeyKind::Digits) s += std::string(key_kind_name(key_kind)) + " keys";
  else if (key_digits_min == 0) s += "keys of up to 5 digits";
  else if (key_digits_min == key_digits_max) s += std::to_string(key_digits_min) + "-digit keys";
  else s += std::to_string(key_digits_min) + "-" + std::to_string(key_digits_max) + "-digit keys";
  const std::vector<Wording>& all = facts > 1 ? fact_wordings() : passkey_wordings();
  const bool held_out = std::all_of(wordings.begin(), wordings.end(), [&](int64_t i) { return all[static_cast<size_t>(i)].held_out; });
  if (held_out) s += ", held-out wordings";
  else if (wordings.size() == 1) s += ", wording " + std::to_string(wordings[0]);
  else s += ", " + std::to_string(wordings.size()) + " wordings";
  if (distractors > 0) s += ", " + std::to_string(distractors) + " distractors";
  if (look_alikes > 0) s += ", " + std::to_string(static_cast<int>(std::lround(look_alikes * 100))) + "% look-alike numbers";
  return s;
}

bool passkey_found(const std::string& output, const std::string& key) {
  if (key.empty()) return false;
  std::istringstream words(output);
  std::string w;
  while (words >> w) {
    const auto [b, e] = trimmed(w);
    if (e - b == key.size() && w.compare(b, e - b, key) == 0) return true;
  }
  return false;
}

AnswerShape answer_shape(const std::string& output, const std::string& key) {
  std::istringstream words(output);
  std::string w;
  if (key.empty() || !(words >> w)) return AnswerShape::Other;
  const auto [b, e] = trimmed(w);
  const std::string word = w.substr(b, e - b);
  if (word == key) return AnswerShape::Key;
  if (word.size() >= 2 && word.size() < key.size() && key.compare(0, word.size(), word) == 0) return AnswerShape::CutShort;
  if (word.size() > key.size() && word.compare(0, key.size(), key) == 0) return AnswerShape::RanOn;
  return AnswerShape::Other;
}

int64_t passkey_digits_right(const std::string& output, const std::string& key) {
  std::istringstream words(output);
  std::string w;
  int64_t best = 0;
  while (words >> w) {
    const auto [b, e] = trimmed(w);
    int64_t right = 0;
    for (size_t i = 0; i < key.size() && b + i < e; ++i) right += w[b + i] == key[i];
    best = std::max(best, right);
  }
  return best;
}

std::string case_key_text(const Json& case_record) {
  if (!case_record.is_object() || !case_record.contains("key")) return {};
  const Json& key = case_record.at("key");
  if (key.is_string()) return key.as_string();
  if (key.is_integer()) return std::to_string(key.as_int());
  return {};
}

std::string readable_piece(const std::string& piece) {
  if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece.back() == '>' &&
      std::isxdigit(static_cast<unsigned char>(piece[3])) && std::isxdigit(static_cast<unsigned char>(piece[4]))) {
    const int byte = std::stoi(piece.substr(3, 2), nullptr, 16);
    if (byte >= 0x20 && byte < 0x7f) return std::string(1, static_cast<char>(byte));
  }
  return piece;
}

}  // namespace memmamba::eval
