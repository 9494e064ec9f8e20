"""Bytes to text for mail: declared charset labels mapped to codecs, and the fall-backs
that real mail needs (undeclared 8-bit text, wrong labels, raw 8-bit header bytes).
"""

import codecs
from functools import lru_cache

# Labels seen in real mail that Python does not know, and labels whose usual senders actually
# write a superset (the WHATWG encoding standard makes the same substitutions).
_CHARSET_FIXES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac-roman",
    "x-sjis": "cp932",
    "x-euc-jp": "euc-jp",
    "unicode-1-1-utf-7": "utf-7",
    "x-user-defined": "cp1252",
    "ansi_x3.4-1968": "ascii",
}

_CHARSET_WIDER = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}

# Text codecs that turn plain ASCII into something else entirely; no mail is written in them.
_CHARSET_REFUSED = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "raw_unicode_escape"}
)


@lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """Map a declared charset label to the Python codec to decode it with, or None."""
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_FIXES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _CHARSET_REFUSED:
        return None
    return _CHARSET_WIDER.get(info.name, info.name)


def _windows_1252(data: bytes) -> str:
    """Decode bytes of unknown encoding; cp1252 covers most stray 8-bit mail, latin-1 the rest."""
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_bytes(data: bytes, label: str | None) -> tuple[str, bool]:
    """Decode ``data`` declared as ``label``; return the text and whether it decoded cleanly.

    Undeclared bytes are read as UTF-8, then Windows-1252, without complaint: RFC 6532 allows
    raw UTF-8 and old mail used 8-bit Latin. A declared charset that is unknown or does not
    fit the bytes is reported, and the best readable text is still returned.
    """
    codec = _codec(label) if label else None
    if codec is None:
        try:
            return data.decode("utf-8"), label is None
        except UnicodeDecodeError:
            return _windows_1252(data), label is None
    try:
        return data.decode(codec), True
    except Exception:
        pass
    if codec != "utf-8":
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    if codec == "cp1252":
        return data.decode("latin-1"), False
    try:
        return data.decode(codec, "replace"), False
    except Exception:
        return _windows_1252(data), False


def from_8bit(value: str, flags: set[str], hint: str | None = None) -> str:
    """Recover text from a header value whose raw 8-bit bytes are held as surrogate escapes.

    Raw UTF-8 is legal (RFC 6532). Otherwise the charset of the body text is the best guess,
    because the same mail program wrote both; Windows-1252 is the last resort.
    """
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = _codec(hint) if hint else None
    if codec is not None and codec != "utf-8":
        try:
            return data.decode(codec)
        except Exception:
            pass
    flags.add("bad_charset")
    return _windows_1252(data)
