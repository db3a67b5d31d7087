// The shared part of the two generators; see mpx_common.h.

#include "mpx_common.h"

#include <ATen/Context.h>   // at::globalContext (oneDNN off)
#include <ATen/Parallel.h>  // at::set_num_threads
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace mpx {
namespace {

const float kDefaultVelocity = 100;  // for 3-column primers: what mpx v1 wrote into its MIDI
const Four kFallbackTemperature{1, 1, 1, 1};  // the README (graph contract): a spec without `sampling`
const Four kFallbackTopP{0.95f, 0.95f, 0.95f, 0.95f};

struct Options {
  std::string model, primer, out;
  long notes = 256;
  uint64_t seed = 0;
  std::optional<Four> temperature, top_p;  // unset: the model's defaults
  Requested requested;                      // the controls asked for; the rest follow the primer
  bool show_controls = false;
  bool bench = false;
  bool force = false;  // replace an OUT that exists (never MODEL or PRIMER)
};

std::string usage(const char* program, const char* model_arg) {
  return std::string("usage: ") + program + " " + model_arg +
         " PRIMER.csv OUT.csv|OUT.mid [--notes N] [--seed S] [--temperature T] [--top-p P]\n"
         "       [--density X] [--chord-share X] [--pitch-mean X] [--pitch-spread X] [--velocity-mean X]\n"
         "       [--duration-median X] [--key K] [--show-controls] [--bench] [--force]\n"
         "  Continues PRIMER.csv (pitch,step,duration,velocity; its last seq_len notes prime the model) with N\n"
         "  notes (default 256), drawn inside the model's graph (contract v3) from the random stream of seed S\n"
         "  (default 0, 0..2^64-1): the same notes as mpx for the same primer, seed, sampling and controls.\n"
         "  --temperature, --top-p: one value, or four comma-separated (pitch,step,duration,velocity);\n"
         "  default: the model spec's `sampling`, else temperature 1 and top-p 0.95. Temperature 0 is greedy.\n"
         "  Controls: by default the primer's own summaries (its last 64 notes; the register is left to the\n"
         "  model). --density (onsets/s), --chord-share (0..1), --pitch-mean, --pitch-spread (semitones),\n"
         "  --velocity-mean (1..127), --duration-median (s) set one, as mpx run does (none: not given);\n"
         "  --key 'D minor' sets the pitch-class profile. --show-controls: print what is fed on stderr.\n"
         "  --bench: also print the generation speed (notes/s, one stream, one thread).\n"
         "  --force: replace OUT if it exists (an existing OUT is refused without it).";
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// The whole text must be one finite number (std::stod would accept "12abc").
bool parse_number(const std::string& text, double& out) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  out = std::strtod(t.c_str(), &end);
  return !t.empty() && end == t.c_str() + t.size() && errno == 0 && std::isfinite(out);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = s.find(sep, start)) != std::string::npos; start = at + 1) parts.push_back(s.substr(start, at - start));
  parts.push_back(s.substr(start));
  return parts;
}

// One value for all four attributes, or four: pitch, step, duration, velocity.
Four parse_four(const std::string& flag, const std::string& text, bool top_p) {
  const std::vector<std::string> parts = split(text, ',');
  const char* allowed = top_p ? "numbers in (0, 1]" : "numbers >= 0 (0 = greedy)";
  if (parts.size() != 1 && parts.size() != 4)
    throw Failure(flag + ": expected one value or four comma-separated (pitch,step,duration,velocity), got '" + text + "'");
  Four out;
  for (size_t i = 0; i < 4; ++i) {
    double v;
    const bool ok = parse_number(parts[parts.size() == 1 ? 0 : i], v) && (top_p ? v > 0 && v <= 1 : v >= 0);
    if (!ok) throw Failure(flag + ": expected " + allowed + ", got '" + text + "'");
    out[i] = float(v);
  }
  return out;
}

uint64_t parse_seed(const std::string& text) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(t.c_str(), &end, 10);
  const bool digits = !t.empty() && std::all_of(t.begin(), t.end(), [](char c) { return std::isdigit((unsigned char)c); });
  if (!digits || end != t.c_str() + t.size() || errno == ERANGE)
    throw Failure("--seed: expected an integer 0..18446744073709551615, got '" + text + "'");
  return uint64_t(v);
}

long parse_notes(const std::string& text) {
  double v;
  if (!parse_number(text, v) || v != std::floor(v) || v < 1 || v > 1e9)
    throw Failure("--notes: expected an integer 1..1000000000, got '" + text + "'");
  return long(v);
}

// --chord-share -> "chord_share": the six summaries a user sets by name (the pitch classes
// through --key); "" for any other flag.
std::string control_of_flag(const std::string& flag) {
  if (flag.rfind("--", 0) != 0) return "";
  std::string name = flag.substr(2);
  std::replace(name.begin(), name.end(), '-', '_');
  const auto& names = control_names();
  return std::find(names.begin(), names.begin() + 6, name) != names.begin() + 6 ? name : "";
}

void request(Requested& requested, const std::string& name, const std::string& value) {
  try {
    if (name == "key") request_key(requested, trim(value));
    else requested[name] = parse_control(name, value);
  } catch (const std::invalid_argument& e) {
    throw Failure(e.what());
  }
}

Options parse_args(int argc, char** argv, const char* program, const char* model_arg) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::puts(usage(program, model_arg).c_str());
      std::exit(0);
    }
    if (arg == "--bench" || arg == "--force" || arg == "--show-controls") {
      (arg == "--bench" ? o.bench : arg == "--force" ? o.force : o.show_controls) = true;
      continue;
    }
    const std::string control = control_of_flag(arg);
    const bool valued = arg == "--notes" || arg == "--seed" || arg == "--temperature" || arg == "--top-p" ||
                        arg == "--key" || !control.empty();
    if (!valued && arg.rfind("--", 0) == 0)
      throw Failure(arg + ": unknown option (known: --notes, --seed, --temperature, --top-p, --density, --chord-share, "
                    "--pitch-mean, --pitch-spread, --velocity-mean, --duration-median, --key, --show-controls, --bench, --force)");
    if (!valued) {
      positional.push_back(arg);
      continue;
    }
    if (i + 1 >= argc) throw Failure(arg + ": missing value");
    const std::string value = argv[++i];
    if (arg == "--notes") o.notes = parse_notes(value);
    else if (arg == "--seed") o.seed = parse_seed(value);
    else if (arg == "--temperature") o.temperature = parse_four(arg, value, false);
    else if (arg == "--top-p") o.top_p = parse_four(arg, value, true);
    else request(o.requested, control.empty() ? "key" : control, value);
  }
  if (positional.size() != 3)
    throw Failure(std::string("expected ") + model_arg + " PRIMER.csv OUT.csv|OUT.mid, got " +
                  std::to_string(positional.size()) + " paths (--help for usage)");
  o.model = positional[0];
  o.primer = positional[1];
  o.out = positional[2];
  return o;
}

// -- primer CSV ------------------------------------------------------------------------------
const char* kHeader4 = "pitch,step,duration,velocity";
const char* kHeader3 = "pitch,step,duration";

// One data line: 3 or 4 numbers in the ranges the model was trained on.
bool parse_note(const std::string& line, size_t columns, Note& note) {
  const std::vector<std::string> cells = split(line, ',');
  if (cells.size() != columns) return false;
  double v[4] = {0, 0, 0, kDefaultVelocity};
  for (size_t i = 0; i < columns; ++i)
    if (!parse_number(cells[i], v[i])) return false;
  if (!(v[0] >= 0 && v[0] <= 127 && v[1] >= 0 && v[2] >= 0 && v[3] >= 1 && v[3] <= 127)) return false;
  note = {float(v[0]), float(v[1]), float(v[2]), float(v[3])};
  return true;
}

// pitch,step,duration,velocity per line (the header is optional). Three columns are accepted
// (mpx v1's CSV) with a default velocity, announced through `notices`.
std::vector<Note> read_primer(const std::string& path, std::vector<std::string>& notices) {
  std::ifstream in(path);
  if (!in) throw Failure(path + ": cannot open the primer CSV");
  std::vector<Note> notes;
  size_t columns = 0;  // set by the header or the first data line
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = trim(line);
    std::string compact = line;
    compact.erase(std::remove(compact.begin(), compact.end(), ' '), compact.end());
    if (line.empty()) continue;
    if (number == 1 && (compact == kHeader4 || compact == kHeader3)) {
      columns = compact == kHeader4 ? 4 : 3;
      continue;
    }
    if (columns == 0) columns = std::count(line.begin(), line.end(), ',') == 2 ? 3 : 4;
    Note note;
    if (!parse_note(line, columns, note))
      throw Failure(path + ": line " + std::to_string(number) + ": expected " +
                    (columns == 4 ? "pitch (0..127),step,duration (>= 0),velocity (1..127)" : "pitch (0..127),step,duration (>= 0)") +
                    ", got '" + line.substr(0, 60) + "'");
    notes.push_back(note);
  }
  if (notes.empty()) throw Failure(path + ": holds no notes");
  if (columns == 3)
    notices.push_back(path + ": 3 columns (pitch,step,duration): velocity " + std::to_string(int(kDefaultVelocity)) +
                      " assumed for every primer note");
  return notes;
}

// -- output ----------------------------------------------------------------------------------
bool ends_with(std::string s, const std::string& suffix) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string csv_text(const std::vector<Note>& notes) {
  std::string text = std::string(kHeader4) + "\n";
  char line[160];
  for (const Note& n : notes) {  // %.9g round-trips a float32 exactly
    std::snprintf(line, sizeof line, "%.9g,%.9g,%.9g,%.9g\n", n.pitch, n.step, n.duration, n.velocity);
    text += line;
  }
  return text;
}

// A Standard MIDI File: format 0, one track, 960 ticks per quarter at 120 bpm, each note's
// own velocity. As in mpx, every note lasts at least one tick (a zero-length note vanishes).
std::string midi_bytes(const std::vector<Note>& notes) {
  const int kTicksPerQuarter = 960;
  const double kTicksPerSecond = kTicksPerQuarter * 120.0 / 60.0;
  struct Event {
    long long tick;
    uint8_t status, pitch, velocity;
  };
  std::vector<Event> events;
  double start = 0;
  for (const Note& n : notes) {
    start += std::max(n.step, 0.0f);
    const long long on = std::llround(start * kTicksPerSecond);
    const long long off = std::max(on + 1, std::llround((start + std::max(n.duration, 0.0f)) * kTicksPerSecond));
    const auto pitch = uint8_t(std::clamp(std::lround(n.pitch), 0L, 127L));
    const auto velocity = uint8_t(std::clamp(std::lround(n.velocity), 1L, 127L));
    events.push_back({on, 0x90, pitch, velocity});
    events.push_back({off, 0x80, pitch, 0});
  }
  // By time; at equal times note-offs first, so a repeated pitch is ended before it restarts.
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return a.tick != b.tick ? a.tick < b.tick : a.status < b.status;
  });
  std::string track = {0x00, char(0xFF), 0x51, 0x03, 0x07, char(0xA1), 0x20};  // tempo: 500000 us/quarter
  long long now = 0;
  for (const Event& e : events) {
    long long delta = e.tick - now;  // variable-length quantity, 7 bits a byte
    now = e.tick;
    char bytes[10];
    int n = 0;
    do bytes[n++] = char(delta & 0x7F); while ((delta >>= 7) > 0);
    while (n-- > 0) track += char(bytes[n] | (n > 0 ? 0x80 : 0x00));
    track += {char(e.status), char(e.pitch), char(e.velocity)};
  }
  track += {0x00, char(0xFF), 0x2F, 0x00};  // end of track
  const uint32_t size = uint32_t(track.size());
  std::string file = {'M', 'T', 'h', 'd', 0, 0, 0, 6, 0, 0, 0, 1, char(kTicksPerQuarter >> 8), char(kTicksPerQuarter & 0xFF),
                      'M', 'T', 'r', 'k', char(size >> 24), char(size >> 16), char(size >> 8), char(size)};
  return file + track;
}

// The output is written to a temporary file beside it and renamed into place at the end, so
// a failure at any point leaves no partial file. The temporary file is made up front: an
// unwritable path fails before any generation.
class OutputFile {
 public:
  OutputFile(const std::string& path, bool replace)
      : path_(path), midi_(ends_with(path, ".mid") || ends_with(path, ".midi")), replace_(replace) {
    if (!midi_ && !ends_with(path, ".csv")) throw Failure(path + ": unknown output type (use .csv, .mid or .midi)");
    std::vector<char> name(path.begin(), path.end());
    const char suffix[] = ".tmp-XXXXXX";
    name.insert(name.end(), suffix, suffix + sizeof suffix);  // with the terminating NUL
    fd_ = mkstemp(name.data());
    if (fd_ < 0) throw Failure(path + ": cannot write here (" + std::strerror(errno) + ")");
    tmp_ = name.data();
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile() {
    if (fd_ >= 0) close(fd_);
    if (!tmp_.empty()) unlink(tmp_.c_str());
  }

  void commit(const std::vector<Note>& notes) {
    const std::string bytes = midi_ ? midi_bytes(notes) : csv_text(notes);
    const mode_t mask = umask(0);
    umask(mask);
    // mkstemp's mode is 0600, too private for an output file
    bool ok = fchmod(fd_, 0666 & ~mask) == 0 && write(fd_, bytes.data(), bytes.size()) == ssize_t(bytes.size());
    ok = close(fd_) == 0 && ok;
    fd_ = -1;
    if (!ok) throw Failure(path_ + ": write failed (" + std::strerror(errno) + ")");
    // Without --force, link() puts the file in place only where none is: a file that appeared
    // since the check before the work is not replaced either (rename would replace it).
    if (!replace_ && link(tmp_.c_str(), path_.c_str()) != 0)
      throw Failure(path_ + (errno == EEXIST ? ": exists; pass --force to replace it" : ": write failed (" + std::string(std::strerror(errno)) + ")"));
    if (replace_ && std::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw Failure(path_ + ": write failed (" + std::strerror(errno) + ")");
    if (!replace_) unlink(tmp_.c_str());
    tmp_.clear();
  }

 private:
  std::string path_, tmp_;
  bool midi_, replace_;
  int fd_ = -1;
};

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// mpx's rules for an output, checked before any work: not one of the inputs (even with
// --force), not a folder, and replaced only with --force.
void check_output(const Options& o) {
  for (const std::string& input : {o.model, o.primer})
    if (same_file(o.out, input)) throw Failure(o.out + ": is the input " + input + "; choose another output (--force does not replace an input)");
  struct stat st;
  if (stat(o.out.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw Failure(o.out + ": is a directory, expected a file path");
    if (!o.force) throw Failure(o.out + ": exists; pass --force to replace it, or choose another OUT");
  }
}

// -- sampling defaults -------------------------------------------------------------------------
struct Sampling {
  Four temperature, top_p;
};

std::optional<Four> spec_four(const std::string& spec, const char* key, const std::string& path) {
  const auto values = json_numbers(spec, {"sampling", key});
  if (!values) return std::nullopt;
  if (values->size() != 4) throw Failure(path + ": spec sampling." + key + " must hold 4 numbers");
  return Four{float((*values)[0]), float((*values)[1]), float((*values)[2]), float((*values)[3])};
}

// The flags when given, else the spec's `sampling`, else the contract's fallback (announced).
Sampling choose_sampling(const Options& o, const Model& model, std::vector<std::string>& notices) {
  std::optional<Four> temperature = o.temperature, top_p = o.top_p;
  if (!temperature) temperature = spec_four(model.spec, "temperature", o.model);
  if (!top_p) top_p = spec_four(model.spec, "top_p", o.model);
  if (!temperature || !top_p)
    notices.push_back(o.model + ": the spec has no sampling defaults: temperature 1, top-p 0.95 (the contract's fallback)");
  return {temperature.value_or(kFallbackTemperature), top_p.value_or(kFallbackTopP)};
}

// -- the generation protocol (docs/contract.md, "Generation protocol") ------------------------------------
// One row of per-row inputs: [1, n].
at::Tensor row(const float* values, int64_t n) { return at::from_blob(const_cast<float*>(values), {1, n}, at::kFloat).clone(); }

// The controls fed with this primer (the seed's last seq_len notes): its summaries and the flags.
Controls choose_controls(const Options& o, const std::vector<Note>& primer) {
  try {
    return resolve_controls(primer, o.requested);
  } catch (const std::invalid_argument& e) {
    throw Failure(e.what());
  }
}

void show_controls(const char* program, const Controls& controls, const Requested& requested) {
  for (size_t i = 0; i < kControls; ++i) {
    const std::string& name = control_names()[i];
    const bool asked = requested.count(name) > 0;
    if (controls[i] < 0)
      std::fprintf(stderr, "%s: %s not given (the model's choice)%s\n", program, name.c_str(), asked ? ", as asked" : "");
    else
      std::fprintf(stderr, "%s: %s %.9g (%s)\n", program, name.c_str(), controls[i], asked ? "asked" : "the primer's");
  }
}

// The primer: the last seq_len notes of the seed (the spec's), or all of a shorter one.
std::vector<Note> primer_of(const Model& model, const std::vector<Note>& seed) {
  const auto seq_len = json_numbers(model.spec, {"seq_len"});
  const size_t n = seed.size();
  const size_t p = seq_len && !seq_len->empty() && (*seq_len)[0] >= 1 ? std::min(n, size_t((*seq_len)[0])) : n;
  return std::vector<Note>(seed.end() - std::ptrdiff_t(p), seed.end());
}

// One stream: the primer in one call (or note by note for a T = 1 graph), then one call per
// note with the state carried; next_note of call i is generated note i, with the uniforms of
// note i, the same sampling parameters and controls at every call. The graph draws; this loop
// only feeds it.
std::vector<Note> generate(const Model& model, const std::vector<Note>& primer, const Options& o, const Sampling& s,
                           const Controls& controls) {
  c10::InferenceMode guard;  // inference only: no autograd bookkeeping
  auto [h, c] = model.zero_state();
  // per row (one row): the sampling parameters, the controls, no attribute given
  const at::Tensor temperature = row(s.temperature.data(), 4), top_p = row(s.top_p.data(), 4);
  const at::Tensor fed = row(controls.data(), int64_t(kControls));
  const at::Tensor given = at::full({1, 4}, kNotGiven, at::kFloat);
  at::Tensor uniforms = at::empty({1, 8}, at::kFloat);
  auto call = [&](const at::Tensor& notes, uint64_t index) {
    note_uniforms(o.seed, 0, index, uniforms.data_ptr<float>());
    const std::vector<at::Tensor> y = model.forward({notes, h, c, uniforms, temperature, top_p, fed, given});
    h = y[1];
    c = y[2];
    return y[0].contiguous();
  };
  const int64_t p = int64_t(primer.size());
  at::Tensor x = at::from_blob(const_cast<Note*>(primer.data()), {1, p, 4}, at::kFloat).clone();
  if (!model.whole_primer) {  // only the last primer call's next_note is kept
    for (int64_t j = 0; j + 1 < p; ++j) call(x.slice(1, j, j + 1).contiguous(), 0);
    x = x.slice(1, p - 1, p).contiguous();
  }
  std::vector<Note> out;
  out.reserve(size_t(o.notes));
  for (long i = 0; i < o.notes; ++i) {
    const at::Tensor next = call(x, uint64_t(i));
    const float* v = next.data_ptr<float>();
    out.push_back({v[0], v[1], v[2], v[3]});
    x = next.view({1, 1, 4});  // the next input: this note
  }
  return out;
}

std::vector<Note> generate_and_time(const Model& model, const std::vector<Note>& primer, const Options& o,
                                    const Sampling& s, const Controls& controls) {
  if (!o.bench) return generate(model, primer, o, s, controls);
  Options warm = o;  // TorchScript optimises its graph over the first calls: not timed
  warm.notes = std::min(o.notes, 64L);
  generate(model, primer, warm, s, controls);
  const auto start = std::chrono::steady_clock::now();
  std::vector<Note> notes = generate(model, primer, o, s, controls);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %ld notes in %.3f s: %.0f notes/s (one stream, 1 thread, primer of %lld notes included)\n",
              model.kind.c_str(), o.notes, seconds, double(o.notes) / seconds, (long long)primer.size());
  return notes;
}

void configure_torch() {
  // One intra-op thread: a one-note LSTM step is too small to gain from more, and a fixed
  // thread count keeps the float results independent of the machine.
  at::set_num_threads(1);
  // AOTInductor's compiled kernels link the system's OpenMP runtime, not torch's bundled one,
  // so at::set_num_threads does not reach them; that runtime reads OMP_NUM_THREADS when the
  // package loads it. (The prototype's kernels run on one thread anyway; a wider model's
  // parallel loops would not.)
  setenv("OMP_NUM_THREADS", "1", /*overwrite=*/1);
  // No oneDNN, as in mpx's torch backends: its LSTM is slower for one-note steps, and the
  // same kernels on both sides keep the notes identical to Python's.
  at::globalContext().setUserEnabledMkldnn(false);
}

}  // namespace

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void note_uniforms(uint64_t seed, uint64_t stream, uint64_t note, float out[8]) {
  const uint64_t key = splitmix64(splitmix64(seed) + stream);
  // the top 24 bits: exact in a float32, times 2^-24 gives [0, 1)
  for (uint64_t j = 0; j < 8; ++j) out[j] = float(splitmix64(key + 8 * note + j) >> 40) * 0x1p-24f;
}

// The first line, and of a long one (torch's archive errors run on for 400 characters) the
// first sentence.
std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  const size_t stop = line.size() > 160 ? line.find(". ", 40) : std::string::npos;
  return stop == std::string::npos ? line : line.substr(0, stop + 1);
}

bool is_file(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::pair<at::Tensor, at::Tensor> zero_state_from_spec(const std::string& spec, const std::string& path) {
  const auto layers = json_numbers(spec, {"config", "layers"}), hidden = json_numbers(spec, {"config", "hidden"});
  if (!layers || !hidden || layers->size() != 1 || hidden->size() != 1)
    throw Failure(path + ": the spec lacks config.layers / config.hidden (needed for the LSTM state)");
  const at::Tensor h = at::zeros({int64_t((*layers)[0]), 1, int64_t((*hidden)[0])}, at::kFloat);
  return {h, h.clone()};
}

void check_spec(const std::string& spec, const std::string& path) {
  const auto version = json_numbers(spec, {"spec_version"});
  if (!version || version->size() != 1 || (*version)[0] < 1 || (*version)[0] != std::floor((*version)[0]))
    throw Failure(path + ": the spec has no valid spec_version; not an mpx export?");
  const int v = int((*version)[0]);
  if (v > kContract)
    throw Failure(path + ": follows graph contract v" + std::to_string(v) + ", newer than this program (v" +
                  std::to_string(kContract) + "): update the examples");
  if (v < kContract)
    throw Failure(path + ": follows graph contract v" + std::to_string(v) + "; this program runs v" + std::to_string(kContract) +
                  " (controls, per-row sampling): a v" + std::to_string(v) +
                  " model cannot be converted, train and export a new one with mpx (mpx train, then mpx export)");
  const auto names = json_strings(spec, {"controls", "names"});
  if (names && *names != control_names()) {
    std::string listed;
    for (const std::string& name : *names) listed += (listed.empty() ? "" : ", ") + name;
    throw Failure(path + ": the model's controls (" + listed + ") are not the ones this program computes (controls.h)");
  }
}

int run(int argc, char** argv, const char* program, const char* model_arg, Loader load) {
  try {
    const Options o = parse_args(argc, argv, program, model_arg);
    check_output(o);  // before the model loads: a refused OUT costs nothing
    configure_torch();
    const Model model = load(o.model);
    std::vector<std::string> notices;  // printed only once every input is known good
    const std::vector<Note> primer = primer_of(model, read_primer(o.primer, notices));
    const Sampling sampling = choose_sampling(o, model, notices);
    const Controls controls = choose_controls(o, primer);
    OutputFile out(o.out, o.force);
    for (const std::string& notice : notices) std::fprintf(stderr, "%s: %s\n", program, notice.c_str());
    if (o.show_controls) show_controls(program, controls, o.requested);
    out.commit(generate_and_time(model, primer, o, sampling, controls));
    return 0;
  } catch (const Failure& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
  } catch (const c10::Error& e) {  // e.g. a model whose forward does not follow the contract
    std::fprintf(stderr, "%s: torch error: %s\n", program, first_line(e.what_without_backtrace()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, first_line(e.what()).c_str());
  }
  return 1;
}

}  // namespace mpx
