// A small XML writer that escapes every attribute value and text.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvcri::runtime {

// Escapes text for an XML attribute value (either quote) or element content.
std::string XmlEscape(std::string_view s);

// True when `s` is UTF-8-agnostic XML 1.0 text: no control characters except
// tab, newline and carriage return (XML cannot carry them even escaped).
bool IsXmlSafe(std::string_view s);

// Builds an indented XML document; every attribute value and text is escaped.
// Callers check IsXmlSafe() on untrusted input first.
class XmlWriter {
 public:
  using Attrs = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  void Open(std::string_view tag, Attrs attrs = {});
  void Close();
  // <tag attrs/> or <tag attrs>text</tag> when text is not empty.
  void Leaf(std::string_view tag, Attrs attrs = {}, std::string_view text = {});
  void Text(std::string_view tag, std::string_view text) { Leaf(tag, {}, text); }
  // The document; every opened element must be closed.
  std::string Finish();

 private:
  void StartTag(std::string_view tag, Attrs attrs);
  std::string out_;
  std::vector<std::string> open_;
};

}  // namespace kvcri::runtime
