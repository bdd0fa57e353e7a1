"""Go's ``%q`` (strconv.Quote) for error texts that read as containerd's.

containerd's messages quote names with ``%q``; ours quote them the same way,
so a client matching on a message (or a person comparing the two daemons'
logs) sees identical text: printable characters as they are, the usual
backslash escapes, other control characters as ``\\xNN``, other
non-printable characters as ``\\uNNNN``/``\\UNNNNNNNN``.
"""

from __future__ import annotations

import unicodedata

_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}

# Unicode categories Go's unicode.IsPrint rejects (besides the ASCII space
# being the only printable space).
_NOT_PRINT = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


def _printable(ch: str) -> bool:
    return ch == " " or unicodedata.category(ch) not in _NOT_PRINT


def go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif _printable(ch):
            out.append(ch)
        elif cp < 0x80:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)
