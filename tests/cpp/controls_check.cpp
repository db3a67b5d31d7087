// The controls of examples/libtorch/controls.cpp on runs of notes given on stdin, for
// tests/test_consumer_controls.py, which holds them to runtime/controls.py bit for bit.
// Numbers travel as C99 hex floats (printf %a), exact both ways. One command per line:
//   summaries N   then N lines "pitch step duration velocity"  -> the summaries of the run
//   primer N      then N note lines                            -> its primer summaries
//   resolve N K   then K lines "name value|none", N note lines -> the resolved controls
//   key TEXT                                                    -> the key's 12 shares
//   flag NAME TEXT                                              -> parse_control's value
// Each answer is one line: the numbers, "none", or "error: MESSAGE".
#include <cstdio>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "controls.h"

namespace {

std::vector<mpx::Note> read_notes(size_t n) {
  std::vector<mpx::Note> notes(n);
  std::string line;
  for (auto& note : notes) {
    std::getline(std::cin, line);
    std::istringstream in(line);
    std::string v[4];
    in >> v[0] >> v[1] >> v[2] >> v[3];
    note = {float(std::strtod(v[0].c_str(), nullptr)), float(std::strtod(v[1].c_str(), nullptr)),
            float(std::strtod(v[2].c_str(), nullptr)), float(std::strtod(v[3].c_str(), nullptr))};
  }
  return notes;
}

template <typename T>
void print(const T& values) {
  std::string line;
  char number[64];
  for (float v : values) {
    std::snprintf(number, sizeof number, "%a", double(v));
    line += (line.empty() ? "" : " ") + std::string(number);
  }
  std::puts(line.c_str());
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    try {
      if (command == "summaries" || command == "primer") {
        size_t n = 0;
        in >> n;
        const auto notes = read_notes(n);
        print(command == "summaries" ? mpx::summaries(notes.data(), notes.size()) : mpx::primer_summaries(notes));
      } else if (command == "resolve") {
        size_t n = 0, k = 0;
        in >> n >> k;
        std::vector<std::pair<std::string, std::string>> asked(k);
        for (auto& [name, value] : asked) {
          std::getline(std::cin, line);
          const size_t space = line.find(' ');
          name = line.substr(0, space);
          value = line.substr(space + 1);
        }
        const auto notes = read_notes(n);
        mpx::Requested requested;
        for (const auto& [name, value] : asked) {
          if (name == "key") mpx::request_key(requested, value);
          else requested[name] = mpx::parse_control(name, value);
        }
        print(mpx::resolve_controls(notes, requested));
      } else if (command == "key") {
        std::string text;
        std::getline(in, text);
        print(mpx::key_profile(text.empty() ? text : text.substr(1)));
      } else if (command == "flag") {
        std::string name, text;
        in >> name;
        std::getline(in, text);
        const auto value = mpx::parse_control(name, text.empty() ? text : text.substr(1));
        if (value) std::printf("%a\n", *value);
        else std::puts("none");
      } else {
        std::printf("error: unknown command %s\n", command.c_str());
      }
    } catch (const std::invalid_argument& e) {
      std::printf("error: %s\n", e.what());
    }
    std::fflush(stdout);
  }
  return 0;
}
