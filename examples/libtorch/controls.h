// Controls of graph contract v3: the musical summaries a v3 model follows, computed as mpx
// computes them (runtime/controls.py) bit for bit: float64 maths in the same order, then
// float32. No libtorch here, so the definitions can be built and tested on their own.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mpx {

// One note: MIDI pitch, seconds since the previous onset, seconds, velocity 1..127.
struct Note {
  float pitch, step, duration, velocity;
};
static_assert(sizeof(Note) == 4 * sizeof(float), "a vector<Note> is read as a [N, 4] tensor");

constexpr double kChord = 0.030;  // seconds: onsets closer than this form one chord
constexpr size_t kWindow = 64;    // the primer's last kWindow notes give the default controls
constexpr size_t kMinNotes = 16;  // fewer notes give no summaries (every control not given)
constexpr float kNotGiven = -1;   // any negative value: not given (the model's learned default)
constexpr size_t kControls = 18;

using Controls = std::array<float, kControls>;
// The requested controls: name -> value, nullopt = not given.
using Requested = std::map<std::string, std::optional<double>>;

// density, chord_share, pitch_mean, pitch_spread, velocity_mean, duration_median, pc0 .. pc11
const std::vector<std::string>& control_names();

// The summaries of a run of notes; every control not given below kMinNotes notes, density not
// given when the run is one chord.
Controls summaries(const Note* notes, size_t count);
// The generation default: the summaries of the primer's last kWindow notes.
Controls primer_summaries(const std::vector<Note>& primer);
// What generation feeds after `primer`, as mpx resolves it: the requested controls, the other
// members of their families not given, the held ones at the primer's summaries, the register
// not given. Throws std::invalid_argument naming a control out of range or unknown.
Controls resolve_controls(const std::vector<Note>& primer, const Requested& requested);

// A control as a user types it (flag --NAME): a number in its range, or "none" / a negative
// number for not given. Throws std::invalid_argument naming the flag and what is allowed.
std::optional<double> parse_control(const std::string& name, const std::string& text);
// "D minor", "F# major", "Bb", "eb min" -> that key's 12 pitch-class shares. Throws
// std::invalid_argument naming the text and what is allowed.
std::array<float, 12> key_profile(const std::string& name);
// --key: pc0 .. pc11 requested as the key's profile ("none": not given).
void request_key(Requested& requested, const std::string& text);

}  // namespace mpx
