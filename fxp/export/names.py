"""Names from a model file, made safe for the files fxp generates.

Layer, tensor, model and plan names come from user files (ONNX, plan JSON) and
may contain anything: newlines, ``*/``, quotes, ``../``, NUL, unicode.  Every
exporter renders them through this module only:

* :func:`c_comment` -- text inside a C ``/* ... */`` comment: printable ASCII
  kept; backslash, control and non-ASCII characters written as escapes
  (``\\n``, ``\\x00``, ``\\u00e9``); ``*/`` and ``/*`` broken up; trigraph
  ``??`` broken up (``??/`` is a backslash in pre-C23 compilers, so it could
  splice lines).  The result has no newline and cannot end the comment.
* :func:`c_identifiers` -- one valid, unique C identifier per name
  (``[A-Za-z][A-Za-z0-9_]*`` without ``__``, unique even after upper-casing, so the
  upper-case ``#define`` names are unique too).  Names that sanitize to the
  same identifier are told apart deterministically (``_2``, ``_3``, ... in
  name order); :func:`identifier_map_comment` records the mapping in the file.
* :func:`file_stems` -- one safe, unique file name stem per name: ``[A-Za-z0-9_.-]``,
  no leading dot, at most 80 characters, no Windows device names, unique without
  regard to case (case-insensitive file systems).
* :func:`md_cell` -- text inside a Markdown table cell or paragraph: ``\\``, ``|``,
  backticks, ``[``, ``]`` and a ``<`` that could open a tag or autolink
  backslash-escaped, control characters escaped,
  so a name can neither split the table nor inject Markdown links or HTML.

>>> c_comment("x */ int injected = 1; /*")
'x *\\\\/ int injected = 1; /\\\\*'
>>> c_identifiers(["conv.1", "conv_1", "9x"])
{'conv.1': 'conv_1_2', 'conv_1': 'conv_1', '9x': 'l_9x'}
>>> file_stems(["../etc/passwd", "a/b"])
{'../etc/passwd': '__etc_passwd', 'a/b': 'a_b'}
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable

__all__ = ["C_IDENTIFIER", "c_comment", "c_identifiers", "escape_text", "file_stems",
           "identifier_map_comment", "is_c_identifier", "md_cell", "md_code", "md_code_block",
           "plot_label"]

C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A C/C++ identifier (ASCII only)."""

MAX_IDENTIFIER = 60
"""Longest identifier stem (suffixes such as ``_w_shift`` come on top)."""

MAX_FILE_STEM = 80
"""Longest file name stem (``.hex`` and the like come on top)."""

_C_KEYWORDS = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires restrict
return short signed sizeof static static_assert static_cast struct switch template this
thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local""".split())

_WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                              *(f"LPT{i}" for i in range(10))])


def escape_text(text: str) -> str:
    """Printable ASCII kept, ``\\`` doubled, everything else as a Python-style escape.

    >>> escape_text("a\\nb\\x00\\u20ac\\\\")
    'a\\\\nb\\\\x00\\\\u20ac\\\\\\\\'
    """
    out = []
    for ch in str(text):
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def _cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def c_comment(text: str, limit: int = 200) -> str:
    """``text`` made safe inside a C/C++ block comment (one line, cannot close it).

    Parameters
    ----------
    text : str
        Any text (a name from a user file).
    limit : int
        Characters kept before escaping; longer text is cut and ends in ``...``.

    Returns
    -------
    str
        Printable ASCII without ``*/``, ``/*``, ``??`` or a newline.
    """
    s = escape_text(_cut(text, limit))
    s = s.replace("*/", "*\\/").replace("/*", "/\\*")
    return re.sub(r"\?(?=\?)", "?\\\\", s)  # "??/" -> "?\?\/": no trigraph left


def is_c_identifier(name: str) -> bool:
    """True if ``name`` is a C identifier that is neither a C/C++ keyword nor reserved.

    Reserved: leading ``__`` or ``_`` + upper-case letter (C11 7.1.3).
    """
    return (isinstance(name, str) and C_IDENTIFIER.fullmatch(name) is not None
            and name not in _C_KEYWORDS and not name.startswith("__")
            and re.match(r"_[A-Z]", name) is None)


def _hash8(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _identifier_base(name: str) -> str:
    """Runs of other characters (``_`` included) become one ``_``, none at either end
    (so no ``__``, reserved in C++, even with a ``_w`` suffix); a leading digit or a
    keyword gets ``l_``; nothing left gives ``n_`` + a hash of the name."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_")
    if not s:
        return f"n_{_hash8(name)}"
    if s[0].isdigit() or s in _C_KEYWORDS:
        s = f"l_{s}"
    if len(s) > MAX_IDENTIFIER:
        s = f"{s[:MAX_IDENTIFIER - 9].rstrip('_')}_{_hash8(name)}"
    return s


def _file_base(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))
    s = re.sub(r"\.{2,}", "_", s).lstrip(".-") or "_"
    if s.split(".")[0].upper() in _WINDOWS_DEVICES:
        s = f"t_{s}"
    if len(s) > MAX_FILE_STEM:
        s = f"{s[:MAX_FILE_STEM - 9]}_{_hash8(name)}"
    return s


def _unique(names: Iterable[str], base: Callable[[str], str]) -> dict[str, str]:
    """``{name: safe}`` with safe names unique case-insensitively, in a stable way.

    A name whose base is shared by no other name keeps it; in a group sharing a
    base, a name equal to the base keeps it, the others (in order) get ``_2``,
    ``_3``, ... skipping every safe name already taken.
    """
    names = list(dict.fromkeys(str(n) for n in names))
    bases = {n: base(n) for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(bases[n].lower(), []).append(n)
    out: dict[str, str] = {}
    taken = set()
    for n in names:
        group = groups[bases[n].lower()]
        keeper = next((m for m in group if m == bases[m]), group[0])
        if n == keeper:
            out[n] = bases[n]
            taken.add(bases[n].lower())
    for n in names:
        if n in out:
            continue
        k = 2
        while f"{bases[n]}_{k}".lower() in taken or f"{bases[n]}_{k}".lower() in groups:
            k += 1
        out[n] = f"{bases[n]}_{k}"
        taken.add(out[n].lower())
    return {n: out[n] for n in names}


def c_identifiers(names: Iterable[str]) -> dict[str, str]:
    """One valid C identifier per name, unique even upper-cased (module docstring)."""
    return _unique(names, _identifier_base)


def file_stems(names: Iterable[str]) -> dict[str, str]:
    """One safe file name stem per name, unique without regard to case (module docstring)."""
    return _unique(names, _file_base)


def identifier_map_comment(mapping: dict[str, str], what: str = "name") -> list[str]:
    """C comment lines recording every ``name -> identifier`` that is not the name itself."""
    return [f"/* {what} '{c_comment(n)}' -> {ident} */"
            for n, ident in mapping.items() if n != ident]


def md_cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell or a line of text (one line, no markup).

    >>> md_cell("a|b `c` <i>[x](y)\\nz")
    'a\\\\|b \\\\`c\\\\` \\\\<i>\\\\[x\\\\](y)\\\\nz'
    """
    s = str(text).replace("\\", "\\\\")
    for ch in "|`[]":
        s = s.replace(ch, "\\" + ch)
    s = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", s)  # could open a tag or autolink; fixed<8,3> cannot
    return "".join(escape_text(ch) if _invisible(ch) else ch for ch in s)


def _invisible(ch: str) -> bool:
    """Control, format (bidi overrides, zero-width), surrogate, unassigned or line separators."""
    return unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")


def md_code(text: object) -> str:
    """``text`` as one inline Markdown code span that it cannot close (one line).

    >>> md_code("a`b")
    '``a`b``'
    """
    s = "".join(escape_text(ch) if _invisible(ch) else ch for ch in str(text))
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_code_block(text: object) -> str:
    """``text`` as a fenced Markdown code block that it cannot close (control chars escaped)."""
    s = "".join(escape_text(ch) if _invisible(ch) and ch != "\n" else ch for ch in str(text))
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    return f"{fence}\n{s}\n{fence}"


def plot_label(text: object, limit: int = 40) -> str:
    """``text`` as a literal matplotlib label: one line, cut to ``limit``, ``$`` escaped
    (mathtext would otherwise parse it, and a malformed formula raises at ``savefig``)."""
    return escape_text(_cut(text, limit)).replace("$", "\\$")
