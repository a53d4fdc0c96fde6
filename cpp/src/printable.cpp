// printable(): text from users' files and URLs made safe to show on a terminal.
#include "emaseg/emaseg.h"

#include <cstdio>

namespace emaseg {

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char escaped[8];
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    // C1 controls in UTF-8 (U+0080..U+009F: 0xC2 0x80..0x9F); some terminals act on them, as CSI.
    if (byte == 0xC2 && i + 1 < text.size()) {
      const auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9F) {
        std::snprintf(escaped, sizeof escaped, "\\x%02x", next);  // the code point, as Python writes it
        out += escaped;
        ++i;
        continue;
      }
    }
    // C0 controls and DEL (ESC starts every terminal command). Line breaks and tabs stay: the
    // messages of LibTorch and OpenCV span lines.
    if ((byte < 0x20 && byte != '\n' && byte != '\t') || byte == 0x7F) {
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += static_cast<char>(byte);
    }
  }
  return out;
}

}  // namespace emaseg
