// mpx_generate: continue a primer with an mpx TorchScript export (music_producter.pt), in C++.
//
//   mpx_generate MODEL.pt PRIMER.csv OUT.csv|OUT.mid [--notes N] [--temperature T] [--seed S]
//
// The same algorithm as mpx's stateful generation: ONE forward call runs the whole primer from
// the zero state, then ONE call per new note carries the LSTM state (h, c). Greedy output
// (temperature 0, the default) matches `mpx` with the TorchScript backend note for note. Sampled
// output uses this program's own RNG (std::mt19937), so a seed reproduces it here, not in Python.

#include <ATen/Context.h>   // at::globalContext (oneDNN off)
#include <ATen/Parallel.h>  // at::set_num_threads
#include <torch/script.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Note {
  float pitch, step, duration;  // MIDI number, seconds since the previous start, seconds
};
static_assert(sizeof(Note) == 3 * sizeof(float), "a vector<Note> is read as a [N, 3] tensor");

// Any failure becomes one line on stderr and exit code 1 (see main).
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const std::string kHeader = "pitch,step,duration";
const char* kUsage =
    "usage: mpx_generate MODEL.pt PRIMER.csv OUT.csv|OUT.mid [--notes N] [--temperature T] [--seed S]\n"
    "  primes with every note of PRIMER.csv, then writes N notes (default 256); temperature 0\n"
    "  (the default) is greedy, T > 0 samples from softmax(logits / T) seeded by S (default 0)";

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// The whole text must be one number (std::stod would accept "12abc").
bool parse_number(const std::string& text, double& out) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  out = std::strtod(t.c_str(), &end);
  return !t.empty() && end == t.c_str() + t.size() && errno == 0 && std::isfinite(out);
}

// CSV as written by `mpx notes`: optional header, then pitch,step,duration per line.
std::vector<Note> read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Failure(path + ": cannot open the primer CSV");
  std::vector<Note> notes;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = trim(line);
    std::string compact = line;
    compact.erase(std::remove(compact.begin(), compact.end(), ' '), compact.end());
    if (line.empty() || (number == 1 && compact == kHeader)) continue;
    double v[3];
    size_t start = 0;
    bool ok = std::count(line.begin(), line.end(), ',') == 2;
    for (int i = 0; ok && i < 3; ++i) {
      const size_t comma = line.find(',', start);
      ok = parse_number(line.substr(start, comma - start), v[i]);
      start = comma + 1;
    }
    // The same limits as mpx's check_notes: the model was never trained on anything else.
    ok = ok && v[0] >= 0 && v[0] <= 127 && v[1] >= 0 && v[2] >= 0;
    if (!ok)
      throw Failure(path + ": line " + std::to_string(number) +
                    ": expected pitch (0..127),step,duration (>= 0), got '" + line.substr(0, 60) + "'");
    notes.push_back({float(v[0]), float(v[1]), float(v[2])});
  }
  if (notes.empty()) throw Failure(path + ": holds no notes");
  return notes;
}

void write_csv(const std::vector<Note>& notes, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw Failure(path + ": cannot open for writing");
  std::fprintf(f, "%s\n", kHeader.c_str());
  // %.9g round-trips a float exactly, and is what mpx writes.
  for (const Note& n : notes) std::fprintf(f, "%.9g,%.9g,%.9g\n", n.pitch, n.step, n.duration);
  if (std::fclose(f) != 0) throw Failure(path + ": write failed");
}

// A minimal Standard MIDI File: format 0, one track, 960 ticks per quarter at 120 bpm,
// velocity 100. As in mpx, every note lasts at least one tick (a zero-length note would vanish).
void write_midi(const std::vector<Note>& notes, const std::string& path) {
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
    events.push_back({on, 0x90, pitch, 100});
    events.push_back({off, 0x80, pitch, 0});
  }
  // By time; at equal times note-offs first, so a repeated pitch is ended before it restarts.
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return a.tick != b.tick ? a.tick < b.tick : a.status < b.status;
  });

  std::vector<uint8_t> track = {0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20};  // tempo: 500000 us/quarter
  auto put_delta = [&track](long long delta) {  // variable-length quantity, 7 bits a byte
    uint8_t bytes[10];
    int n = 0;
    do bytes[n++] = uint8_t(delta & 0x7F); while ((delta >>= 7) > 0);
    while (n-- > 0) track.push_back(bytes[n] | (n > 0 ? 0x80 : 0x00));
  };
  long long now = 0;
  for (const Event& e : events) {
    put_delta(e.tick - now);
    now = e.tick;
    track.insert(track.end(), {e.status, e.pitch, e.velocity});
  }
  track.insert(track.end(), {0x00, 0xFF, 0x2F, 0x00});  // end of track

  const uint32_t size = uint32_t(track.size());
  std::vector<uint8_t> file = {'M', 'T', 'h', 'd', 0, 0, 0, 6, 0, 0, 0, 1,
                               uint8_t(kTicksPerQuarter >> 8), uint8_t(kTicksPerQuarter & 0xFF),
                               'M', 'T', 'r', 'k', uint8_t(size >> 24), uint8_t(size >> 16),
                               uint8_t(size >> 8), uint8_t(size)};
  file.insert(file.end(), track.begin(), track.end());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(file.data()), std::streamsize(file.size()));
  if (!out.flush()) throw Failure(path + ": cannot write the MIDI file");
}

// Greedy: the first maximum, as numpy's argmax. Otherwise a draw from softmax(logits / T).
int choose_pitch(const at::Tensor& logits, double temperature, std::mt19937& rng) {
  const float* p = logits.data_ptr<float>();
  const int n = int(logits.numel());
  const int best = int(std::max_element(p, p + n) - p);
  if (temperature == 0) return best;
  std::vector<double> weights(n);
  for (int i = 0; i < n; ++i) weights[i] = std::exp((double(p[i]) - p[best]) / temperature);  // max 1: no overflow
  return std::discrete_distribution<int>(weights.begin(), weights.end())(rng);
}

struct Options {
  std::string model, primer, out;
  long notes = 256;
  double temperature = 0;
  unsigned long seed = 0;
};

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::puts(kUsage);
      std::exit(0);
    }
    if (arg == "--notes" || arg == "--temperature" || arg == "--seed") {
      if (i + 1 >= argc) throw Failure(arg + ": missing value");
      const std::string text = argv[++i];
      double v;
      const bool number = parse_number(text, v);
      if (arg == "--temperature") {
        if (!number || v < 0) throw Failure("--temperature: expected a number >= 0 (0 = greedy), got '" + text + "'");
        o.temperature = v;
      } else {
        if (!number || v != std::floor(v) || v < (arg == "--notes" ? 1 : 0) || v > 4294967295.0)
          throw Failure(arg + ": expected " + (arg == "--notes" ? "a positive" : "a non-negative") +
                        " integer, got '" + text + "'");
        if (arg == "--notes") o.notes = long(v);
        else o.seed = static_cast<unsigned long>(v);
      }
    } else if (arg.rfind("--", 0) == 0) {
      throw Failure(arg + ": unknown option (known: --notes, --temperature, --seed)");
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 3)
    throw Failure("expected MODEL.pt PRIMER.csv OUT.csv|OUT.mid, got " + std::to_string(positional.size()) +
                  " paths (--help for usage)");
  o.model = positional[0];
  o.primer = positional[1];
  o.out = positional[2];
  return o;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

torch::jit::Module load_model(const std::string& path) {
  if (!std::ifstream(path)) throw Failure(path + ": no such model file");
  // The spec travels inside the archive; an mpx export always has it.
  torch::jit::ExtraFilesMap extra{{"mpx_spec.json", ""}};
  torch::jit::Module model;
  try {
    model = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error& e) {
    throw Failure(path + ": not a loadable TorchScript archive (" + first_line(e.what_without_backtrace()) + ")");
  }
  if (extra["mpx_spec.json"].empty() || !model.find_method("zero_state"))
    throw Failure(path + ": not an mpx export (no mpx_spec.json or zero_state); export it with `mpx export`");
  model.eval();
  return model;
}

std::vector<Note> generate(torch::jit::Module& model, std::vector<Note> primer, const Options& o) {
  c10::InferenceMode guard;  // no autograd bookkeeping: this is inference only
  std::mt19937 rng(uint32_t(o.seed));

  // The zero state comes from the model itself, so no layer/hidden sizes are hard-coded here.
  auto state = model.run_method("zero_state", 1).toTuple()->elements();
  at::Tensor h = state[0].toTensor(), c = state[1].toTensor();
  // The whole primer [1, P, 3] in one call; raw pitches, the graph normalises its own input.
  at::Tensor x = torch::from_blob(primer.data(), {1, int64_t(primer.size()), 3}, torch::kFloat32).clone();

  std::vector<Note> out;
  for (long i = 0; i < o.notes; ++i) {
    // forward(notes, h0, c0) -> (pitch_logits [1,T,128], step [1,T], duration [1,T], hn, cn)
    auto y = model.forward({x, h, c}).toTuple()->elements();
    const at::Tensor logits = y[0].toTensor()[0][-1].contiguous();  // last position only
    const float step = y[1].toTensor()[0][-1].item<float>();
    const float duration = y[2].toTensor()[0][-1].item<float>();
    h = y[3].toTensor();
    c = y[4].toTensor();
    // Regressions are clipped at 0, as mpx's sampler does.
    const Note note{float(choose_pitch(logits, o.temperature, rng)), std::max(step, 0.0f), std::max(duration, 0.0f)};
    out.push_back(note);
    x = torch::tensor({note.pitch, note.step, note.duration}).view({1, 1, 3});  // next input: this note
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);
    // One intra-op thread: a one-note LSTM step is too small to gain from more, and a fixed
    // thread count keeps the float results independent of the machine.
    at::set_num_threads(1);
    // No oneDNN, as in mpx's torch backends: its LSTM is slower for one-note steps, and the
    // same kernels on both sides keep greedy notes identical to Python's.
    at::globalContext().setUserEnabledMkldnn(false);
    torch::jit::Module model = load_model(o.model);
    const std::vector<Note> notes = generate(model, read_csv(o.primer), o);
    if (ends_with(o.out, ".mid") || ends_with(o.out, ".midi"))
      write_midi(notes, o.out);
    else
      write_csv(notes, o.out);
    return 0;
  } catch (const Failure& e) {
    std::fprintf(stderr, "mpx_generate: %s\n", e.what());
  } catch (const c10::Error& e) {  // e.g. a model whose forward does not follow the contract
    std::fprintf(stderr, "mpx_generate: torch error: %s\n", first_line(e.what_without_backtrace()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpx_generate: %s\n", first_line(e.what()).c_str());
  }
  return 1;
}
