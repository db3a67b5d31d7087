// The controls of graph contract v3, as runtime/controls.py defines them; see controls.h.
// Built with -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round differently.

#include "controls.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace mpx {
namespace {

struct Range {
  double low, high;
  const char* unit;
};

const Range& range_of(size_t i) {
  static const Range kRanges[6] = {{0.1, 50, "onsets/s"},      {0, 1, "share of notes"},
                                   {0, 127, "MIDI pitch"},     {0, 64, "semitones (standard deviation)"},
                                   {1, 127, "MIDI velocity"},  {0, 8, "seconds"}};
  static const Range kShare = {0, 1, "share of notes"};
  return i < 6 ? kRanges[i] : kShare;
}

size_t index_of(const std::string& name) {
  const auto& names = control_names();
  const auto at = std::find(names.begin(), names.end(), name);
  if (at == names.end()) {
    std::string known;
    for (size_t i = 0; i < 6; ++i) known += names[i] + ", ";
    throw std::invalid_argument("unknown control '" + name + "'; known: " + known + "pc0..pc11");
  }
  return size_t(at - names.begin());
}

// The families (a requested control releases the others of its own from the primer's values).
int family_of(size_t i) {
  static const int kFamily[6] = {0, 0, 1, 1, 2, 0};  // density, chord_share, duration_median: timing
  return i < 6 ? kFamily[i] : 3;                     // the pitch classes: the key
}

bool held(size_t i) { return i != 2 && i != 3; }  // the register is the model's unless asked for

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string flag_of(const std::string& name) {
  std::string flag = "--" + name;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

std::string allowed(size_t i) {
  const Range& r = range_of(i);
  return number_text(r.low) + ".." + number_text(r.high) + " " + r.unit;
}

void check(size_t i, double value, const std::string& label) {
  const Range& r = range_of(i);
  if (!std::isfinite(value) || (value >= 0 && (value < r.low || value > r.high)))
    throw std::invalid_argument(label + " " + number_text(value) + " is out of range; allowed " + allowed(i) +
                                ", or none (not given)");
}

// Pitch-class profiles of major and minor music, tonic at 0 (runtime/controls.py KEY_PROFILES):
// double literals rounded to float, as numpy rounds them.
const double kMajor[12] = {0.1553, 0.0343, 0.1016, 0.0435, 0.1103, 0.1002, 0.0384, 0.1429, 0.0521, 0.0940, 0.0468, 0.0806};
const double kMinor[12] = {0.1575, 0.0527, 0.0791, 0.1118, 0.0474, 0.1031, 0.0373, 0.1371, 0.1005, 0.0403, 0.0740, 0.0592};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

}  // namespace

const std::vector<std::string>& control_names() {
  static const std::vector<std::string> kNames = {
      "density", "chord_share", "pitch_mean", "pitch_spread", "velocity_mean", "duration_median",
      "pc0", "pc1", "pc2", "pc3", "pc4", "pc5", "pc6", "pc7", "pc8", "pc9", "pc10", "pc11"};
  return kNames;
}

Controls summaries(const Note* notes, size_t count) {
  Controls out;
  out.fill(kNotGiven);
  if (count < kMinNotes) return out;
  const double m = double(count);
  std::vector<double> durations(count);
  double classes[12] = {0};
  double s1 = 0, s2 = 0, velocities = 0, chords = 1, in_chord = 0;
  size_t last_start = 0;
  for (size_t i = 0; i < count; ++i) {
    const double p = std::floor(double(notes[i].pitch) + 0.5);
    const double step = notes[i].step;
    durations[i] = notes[i].duration;
    s1 += p;  // sums of integers: exact in float64, in any order
    s2 += p * p;
    velocities += std::floor(double(notes[i].velocity) + 0.5);
    double k = std::fmod(p, 12.0);
    classes[int(k < 0 ? k + 12 : k)] += 1;
    if (i > 0 && step >= kChord) {
      chords += 1;
      last_start = i;
    }
    const bool joins_previous = i > 0 && step < kChord;
    const bool joined_by_next = i + 1 < count && double(notes[i + 1].step) < kChord;
    if (joins_previous || joined_by_next) in_chord += 1;
  }
  double span = 0;  // s_2 + ... + s_j, left to right: the one sum of non-integers
  for (size_t i = 1; i <= last_start; ++i) span += double(notes[i].step);
  std::sort(durations.begin(), durations.end());
  const double median = (durations[(count - 1) / 2] + durations[count / 2]) / 2;
  const double spread = std::sqrt(std::max(m * s2 - s1 * s1, 0.0) / (m * m));
  const double values[6] = {chords > 1 ? (chords - 1) / (span > 0 ? span : 1.0) : double(kNotGiven),
                            in_chord / m, s1 / m, spread, velocities / m, median};
  for (size_t i = 0; i < 6; ++i) out[i] = float(values[i]);  // the graph's input type
  for (size_t k = 0; k < 12; ++k) out[6 + k] = float(classes[k] / m);
  return out;
}

Controls primer_summaries(const std::vector<Note>& primer) {
  const size_t start = primer.size() > kWindow ? primer.size() - kWindow : 0;
  return summaries(primer.data() + start, primer.size() - start);
}

Controls resolve_controls(const std::vector<Note>& primer, const Requested& requested) {
  bool released[4] = {false, false, false, false};
  for (const auto& [name, value] : requested) released[family_of(index_of(name))] = true;
  const Controls own = primer_summaries(primer);
  Controls out;
  for (size_t i = 0; i < kControls; ++i) {
    const auto asked = requested.find(control_names()[i]);
    if (asked != requested.end()) out[i] = asked->second ? float(*asked->second) : kNotGiven;
    else out[i] = held(i) && !released[family_of(i)] ? own[i] : kNotGiven;
    check(i, out[i], "controls: " + control_names()[i]);
  }
  return out;
}

std::optional<double> parse_control(const std::string& name, const std::string& text) {
  const size_t i = index_of(name);
  const std::string flag = flag_of(name);
  const size_t b = text.find_first_not_of(" \t"), e = text.find_last_not_of(" \t");
  const std::string t = b == std::string::npos ? "" : text.substr(b, e - b + 1);
  if (lower(t) == "none") return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(t.c_str(), &end);
  const bool number = !t.empty() && end == t.c_str() + t.size() && errno == 0 &&
                      t.find_first_of("xXnN") == std::string::npos;  // no hex, inf or nan spellings
  if (!number) throw std::invalid_argument(flag + " must be a number (" + allowed(i) + ") or none, got '" + t + "'");
  check(i, value, flag);
  return value;
}

std::array<float, 12> key_profile(const std::string& name) {
  // Python's " ".join(name.split()): runs of whitespace become one space, none at either end.
  std::string text;
  std::istringstream words(name);
  for (std::string word; words >> word;) text += (text.empty() ? "" : " ") + word;
  // The accidentals in UTF-8: '#', "♯" (U+266F), 'b', "♭" (U+266D).
  static const std::pair<const char*, int> kAccidentals[] = {{"#", 1}, {"\xE2\x99\xAF", 1}, {"b", -1}, {"\xE2\x99\xAD", -1}};
  static const std::map<char, int> kTonics = {{'c', 0}, {'d', 2}, {'e', 4}, {'f', 5}, {'g', 7}, {'a', 9}, {'b', 11}};
  static const std::map<std::string, bool> kMinorOf = {{"", false},     {"major", false}, {"maj", false},
                                                       {"minor", true}, {"min", true},    {"m", true}};
  const auto refuse = [&name]() {
    return std::invalid_argument("--key '" + name + "' is not a key; write a tonic A-G, optionally # or b, then "
                                 "major or minor (e.g. 'D minor', 'F# major', 'Bb')");
  };
  if (text.empty() || (unsigned char)text[0] >= 0x80) throw refuse();
  const auto tonic = kTonics.find(char(std::tolower((unsigned char)text[0])));
  if (tonic == kTonics.end()) throw refuse();
  std::string rest = text.substr(1);
  int shift = tonic->second;
  for (const auto& [spelling, value] : kAccidentals) {
    if (rest.rfind(spelling, 0) == 0) {
      shift += value;
      rest = rest.substr(std::string(spelling).size());
      break;
    }
  }
  const size_t b = rest.find_first_not_of(' ');
  const auto mode = kMinorOf.find(lower(b == std::string::npos ? "" : rest.substr(b)));
  if (mode == kMinorOf.end()) throw refuse();
  shift = ((shift % 12) + 12) % 12;
  const double* base = mode->second ? kMinor : kMajor;
  std::array<float, 12> out;
  for (int k = 0; k < 12; ++k) out[size_t(k)] = float(base[(k - shift + 12) % 12]);
  return out;
}

void request_key(Requested& requested, const std::string& text) {
  const bool none = lower(text) == "none";
  const std::array<float, 12> profile = none ? std::array<float, 12>{} : key_profile(text);
  for (size_t k = 0; k < 12; ++k)
    requested["pc" + std::to_string(k)] = none ? std::nullopt : std::optional<double>(profile[k]);
}

}  // namespace mpx
