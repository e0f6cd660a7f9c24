// XmlWriter and XML escaping: indented documents with every value escaped.
#include "runtime/xml_writer.h"

#include <cstdlib>

namespace kvcri::runtime {

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\n': out += "&#10;"; break;  // keep newlines in attributes
      case '\r': out += "&#13;"; break;
      case '\t': out += "&#9;"; break;
      default: out += c;
    }
  }
  return out;
}

bool IsXmlSafe(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
    if (c == 0x7f) return false;
  }
  return true;
}

void XmlWriter::StartTag(std::string_view tag, Attrs attrs) {
  out_.append(open_.size() * 2, ' ');
  out_ += '<';
  out_ += tag;
  for (const auto& [k, v] : attrs) {
    out_ += ' ';
    out_ += k;
    out_ += "='";
    out_ += XmlEscape(v);
    out_ += '\'';
  }
}

void XmlWriter::Open(std::string_view tag, Attrs attrs) {
  StartTag(tag, attrs);
  out_ += ">\n";
  open_.emplace_back(tag);
}

void XmlWriter::Close() {
  if (open_.empty()) std::abort();  // unbalanced Close(): a bug in the caller
  std::string tag = std::move(open_.back());
  open_.pop_back();
  out_.append(open_.size() * 2, ' ');
  out_ += "</" + tag + ">\n";
}

void XmlWriter::Leaf(std::string_view tag, Attrs attrs, std::string_view text) {
  StartTag(tag, attrs);
  if (text.empty()) {
    out_ += "/>\n";
    return;
  }
  out_ += '>';
  out_ += XmlEscape(text);
  out_ += "</";
  out_ += tag;
  out_ += ">\n";
}

std::string XmlWriter::Finish() {
  if (!open_.empty()) std::abort();  // unclosed element: a bug in the caller
  return std::move(out_);
}

}  // namespace kvcri::runtime
