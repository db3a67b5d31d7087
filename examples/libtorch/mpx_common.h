// What mpx_generate (TorchScript) and mpx_generate_aoti (AOTInductor) share: contract v3's
// generation protocol, its portable random stream, the primer CSV, CSV/MIDI output, the flags.
// The controls (the musical summaries a v3 model follows) are controls.h's, torch-free.
// Each program only adds a loader that turns its artifact into a Model.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "controls.h"  // Note, the controls

namespace mpx {

constexpr int kContract = 3;  // the graph contract these programs run

// Any failure becomes one line on stderr and exit code 1 (see run).
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Four = std::array<float, 4>;  // per attribute: pitch, step, duration, velocity

// The portable random stream (docs/contract.md, "Random stream"): SplitMix64 over a counter.
uint64_t splitmix64(uint64_t x);
// The 8 uniforms of note `note` of stream `stream`: out[j] = uniform(seed, stream, 8 * note + j).
void note_uniforms(uint64_t seed, uint64_t stream, uint64_t note, float out[8]);

// A loaded artifact behind the contract. forward takes (notes [B,T,4], h0, c0, uniforms [B,8],
// temperature [B,4], top_p [B,4], controls [B,18], given [B,4]) and returns (next_note [B,4],
// hn, cn, logits).
struct Model {
  std::string kind;  // for messages and --bench: "TorchScript", "AOTInductor"
  std::string spec;  // the spec JSON the artifact carries
  std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)> forward;
  std::function<std::pair<at::Tensor, at::Tensor>()> zero_state;  // (h, c) for one stream
  bool whole_primer = true;  // false: a graph exported with T = 1 takes the primer note by note
};

using Loader = Model (*)(const std::string& path);

// The program: flags, primer, model, generation, output. Returns the exit code.
int run(int argc, char** argv, const char* program, const char* model_arg, Loader load);

// The number (or numbers of the array) at `path` (object keys) of a JSON text; nullopt when a
// key is missing. Throws Failure on malformed JSON. Enough JSON for the spec's few fields.
std::optional<std::vector<double>> json_numbers(const std::string& json, const std::vector<std::string>& path);
// The same for a string or an array of strings (plain ASCII; escapes kept as their character).
std::optional<std::vector<std::string>> json_strings(const std::string& json, const std::vector<std::string>& path);

// The spec must follow contract v3 (an older model is refused in one line naming its contract)
// and name the controls controls.h computes, in its order. Throws Failure naming `path`.
void check_spec(const std::string& spec, const std::string& path);

// (h, c) zeros of [config.layers, 1, config.hidden] from the spec (for artifacts that have no
// zero_state of their own).
std::pair<at::Tensor, at::Tensor> zero_state_from_spec(const std::string& spec, const std::string& path);

std::string first_line(const std::string& s);
bool is_file(const std::string& path);

}  // namespace mpx
