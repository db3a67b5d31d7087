// Just enough JSON to read a few numbers out of the spec (libtorch ships no JSON parser):
// walk objects by key, skip every other value, read a number or an array of numbers.

#include "mpx_common.h"

#include <cctype>
#include <cstdlib>
#include <cstring>

namespace mpx {
namespace {

class Cursor {
 public:
  explicit Cursor(const std::string& text) : s_(text) {}

  // Inside the object at the cursor, stop at the value of `key`; false when it has none.
  bool enter(const std::string& key) {
    if (peek() != '{') return false;
    ++i_;
    if (peek() == '}') return false;
    for (;;) {
      const std::string name = string();
      expect(':');
      if (name == key) return true;
      skip();
      if (peek() != ',') return false;
      ++i_;
    }
  }

  // The string at the cursor, or the strings of the array at the cursor.
  std::vector<std::string> strings() {
    if (peek() != '[') return {string()};
    ++i_;
    std::vector<std::string> out;
    if (peek() == ']') return out;
    for (out.push_back(string()); peek() == ','; out.push_back(string())) ++i_;
    expect(']');
    return out;
  }

  // The number at the cursor, or the numbers of the array at the cursor.
  std::vector<double> numbers() {
    if (peek() != '[') return {number()};
    ++i_;
    std::vector<double> out;
    if (peek() == ']') return out;
    for (out.push_back(number()); peek() == ','; out.push_back(number())) ++i_;
    expect(']');
    return out;
  }

 private:
  [[noreturn]] void malformed() { throw Failure("malformed spec JSON at byte " + std::to_string(i_)); }

  char peek() {
    while (i_ < s_.size() && std::isspace((unsigned char)s_[i_])) ++i_;
    return i_ < s_.size() ? s_[i_] : '\0';
  }

  void expect(char c) {
    if (peek() != c) malformed();
    ++i_;
  }

  // Escapes are kept as their escaped character: enough to compare plain keys and to skip.
  std::string string() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') ++i_;
      if (i_ < s_.size()) out += s_[i_++];
    }
    expect('"');
    return out;
  }

  double number() {
    peek();
    const char* start = s_.c_str() + i_;
    char* end = nullptr;
    const double v = std::strtod(start, &end);
    if (end == start) malformed();
    i_ += size_t(end - start);
    return v;
  }

  void skip() {
    const char c = peek();
    if (c == '"') {
      string();
    } else if (c == '{' || c == '[') {
      skip_container(c == '{');
    } else {  // number, true, false, null
      const size_t start = i_;
      while (i_ < s_.size() && std::strchr("+-.0123456789eEtruefalsn", s_[i_])) ++i_;
      if (i_ == start) malformed();
    }
  }

  void skip_container(bool object) {
    const char close = object ? '}' : ']';
    ++i_;
    if (peek() == close) {
      ++i_;
      return;
    }
    for (;;) {
      if (object) {
        string();
        expect(':');
      }
      skip();
      if (peek() != ',') break;
      ++i_;
    }
    expect(close);
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<std::vector<double>> json_numbers(const std::string& json, const std::vector<std::string>& path) {
  Cursor cursor(json);
  for (const std::string& key : path)
    if (!cursor.enter(key)) return std::nullopt;
  return cursor.numbers();
}

std::optional<std::vector<std::string>> json_strings(const std::string& json, const std::vector<std::string>& path) {
  Cursor cursor(json);
  for (const std::string& key : path)
    if (!cursor.enter(key)) return std::nullopt;
  return cursor.strings();
}

}  // namespace mpx
