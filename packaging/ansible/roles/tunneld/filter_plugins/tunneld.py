# -*- coding: utf-8 -*-
"""Filters of the tunneld role.

``to_tunneld_toml``: a mapping (a tunnel set's ``config``) as the TOML text of
/etc/tunneld/NAME.toml. A small, strict TOML writer: Python 3.11's ``tomllib`` only reads, and a
third-party writer would have to be installed on every controller. It writes what it is given,
faithfully, or refuses it with the dotted path of the value:

- strings as TOML basic strings: ``"`` and ``\\`` escaped, control characters as ``\\n``,
  ``\\t``, ... or ``\\uXXXX``, everything else (non-ASCII included) as it is;
- integers (64-bit), floats (``inf``/``nan`` included), booleans, dates and datetimes;
- lists as arrays (one element per line when there are several), mappings inside lists as inline
  tables (the table form of ``dynamic``), mappings as ``[dotted.tables]``;
- keys bare when they are ``A-Za-z0-9_-`` only, quoted otherwise (``[hosts."db.internal"]``).

``None`` has no TOML form and is refused, as is anything else that is not data.

``tunneld_newest_deb``: of a list of paths of ``tunneld_<version>_<arch>.deb`` files, the one
with the highest version, compared as dpkg does (epochs, ``~``, revisions).

``tunneld_authorized_keys``: the authorized_keys lines that ``tunneld keygen`` printed, each with
the server and user it is for (``tunneld_generate_keys``).

The controller runs these; they need the Python standard library only.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Mapping
from urllib.parse import unquote

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # tested without Ansible

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        """Raised for a value that has no TOML form."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _string(text, path):
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append("\\u%04X" % ord(ch))
        elif "\ud800" <= ch <= "\udfff":
            raise AnsibleFilterError(
                "to_tunneld_toml: %s: a lone surrogate (U+%04X) is not text"
                % (path or "value", ord(ch))
            )
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key, path):
    if not isinstance(key, str):
        raise AnsibleFilterError(
            "to_tunneld_toml: %s: key %r is a %s; TOML keys are strings"
            % (path or "top level", key, type(key).__name__)
        )
    return key if _BARE_KEY.match(key) else _string(key, path)


def _join(path, key):
    return "%s.%s" % (path, key) if path else key


def _is_list(value):
    return isinstance(value, (list, tuple))


def _scalar(value, path):
    """The TOML text of a value that is not a table or array."""
    # bool before int: True is an int in Python.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise AnsibleFilterError(
                "to_tunneld_toml: %s: %d does not fit in TOML's 64-bit integers" % (path, value)
            )
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(float(value))
        # repr gives "1e+16" or "1.5": both valid TOML floats; "1e16" is too, "1." is not made.
        return text
    if isinstance(value, str):
        return _string(value, path)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if value is None:
        raise AnsibleFilterError(
            "to_tunneld_toml: %s is null (empty in YAML); TOML has no null: remove the key or "
            "give it a value" % path
        )
    raise AnsibleFilterError(
        "to_tunneld_toml: %s: a %s has no TOML form" % (path, type(value).__name__)
    )


def _inline(value, path):
    """A value on one line: scalars, arrays and inline tables."""
    if isinstance(value, Mapping):
        items = [
            "%s = %s" % (_key(k, path), _inline(v, _join(path, _key(k, path))))
            for k, v in value.items()
        ]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if _is_list(value):
        return "[" + ", ".join(_inline(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)) + "]"
    return _scalar(value, path)


def _value(value, path):
    """A value of a key=value line of a table: arrays of several elements one per line."""
    if _is_list(value) and len(value) > 1:
        lines = ["["]
        lines.extend(
            "    %s," % _inline(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)
        )
        lines.append("]")
        return "\n".join(lines)
    return _inline(value, path)


def _table(table, header, path, out):
    """Appends the lines of one table: its own keys under its header, then its sub-tables."""
    plain = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    subtables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    # A table that only holds tables needs no header of its own ([tunnels] before [tunnels.db]).
    if header is not None and (plain or not subtables):
        if out:
            out.append("")
        out.append("[%s]" % header)
    for k, v in plain:
        key = _key(k, path)
        out.append("%s = %s" % (key, _value(v, _join(path, key))))
    for k, v in subtables:
        key = _key(k, path)
        _table(v, _join(header, key) if header else key, _join(path, key), out)


def to_tunneld_toml(data):
    """The TOML text (ending with a newline) of the mapping ``data``."""
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(
            "to_tunneld_toml: expected a mapping (defaults, hosts, tunnels), got a %s"
            % type(data).__name__
        )
    out = []
    _table(data, None, "", out)
    return "\n".join(out) + "\n"


# dpkg's version comparison (lib/dpkg/version.c: verrevcmp, dpkg_version_compare).
def _isdigit(ch):
    return "0" <= ch <= "9"


def _order(ch):
    if ch == "" or _isdigit(ch):
        return 0
    if ch.isascii() and ch.isalpha():
        return ord(ch)
    if ch == "~":
        return -1
    return ord(ch) + 256


def _verrevcmp(a, b):
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not _isdigit(a[i])) or (j < len(b) and not _isdigit(b[j])):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and _isdigit(a[i]) and j < len(b) and _isdigit(b[j]):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and _isdigit(a[i]):
            return 1
        if j < len(b) and _isdigit(b[j]):
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(version):
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_debian_versions(a, b):
    """<0, 0 or >0 as dpkg --compare-versions A lt/eq/gt B."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


_DEB_NAME = re.compile(r"tunneld_(?P<version>[^_]+)_(?P<arch>[^_]+)\.deb\Z")


def deb_version(path):
    """The version in a ``tunneld_<version>_<arch>.deb`` file name (epoch ``%3a`` decoded)."""
    match = _DEB_NAME.match(os.path.basename(str(path)))
    if not match:
        raise AnsibleFilterError(
            "tunneld_newest_deb: %s is not named tunneld_<version>_<arch>.deb" % path
        )
    return unquote(match.group("version"))


def tunneld_newest_deb(paths):
    """The path, of ``paths``, whose package version is the highest."""
    paths = [str(p) for p in paths]
    if not paths:
        raise AnsibleFilterError("tunneld_newest_deb: no package to choose from")
    best = paths[0]
    for path in paths[1:]:
        if compare_debian_versions(deb_version(path), deb_version(best)) > 0:
            best = path
    deb_version(best)
    return best


# The heading ``tunneld keygen`` prints above the lines of each server (crates/tunneld/src/keygen.rs):
# ``# tunnel T, server LABEL: in ~USER/.ssh/authorized_keys on HOST:PORT`` (``jump host I of N``
# in place of ``server`` for a jump host; an IPv6 HOST in brackets).
_KEYGEN_HEADING = re.compile(
    r"^# tunnel (?P<tunnel>\S+), (?:server|jump host \d+ of \d+) (?P<label>.+): "
    r"in ~(?P<user>[^/]+)/\.ssh/authorized_keys on (?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+)):(?P<port>\d+)$"
)


def tunneld_authorized_keys(outputs):
    """The authorized_keys lines of ``tunneld keygen`` outputs (a string or a list of them).

    Each is a mapping: ``host`` and ``port`` of the server as the configuration names it,
    ``user`` (whose authorized_keys holds it), ``tunnel``, ``line`` (options, public key,
    comment) and ``comment`` (``tunneld:TUNNEL@DEVICE``, which tells a line of this device and
    tunnel from the others). Comment lines (``#``) are notes for people, and are left out.
    """
    if isinstance(outputs, str):
        outputs = [outputs]
    found = []
    for output in outputs:
        server = None
        for raw in str(output).splitlines():
            text = raw.strip()
            heading = _KEYGEN_HEADING.match(text)
            if heading:
                server = heading
                continue
            if not text or text.startswith("#"):
                continue
            if server is None:
                raise AnsibleFilterError(
                    "tunneld_authorized_keys: a line before any server heading: %r" % text
                )
            entry = {
                "tunnel": server.group("tunnel"),
                "user": server.group("user"),
                "host": server.group("v6") or server.group("host"),
                "port": int(server.group("port")),
                "line": text,
                "comment": text.split()[-1],
            }
            if entry not in found:
                found.append(entry)
    return found


class FilterModule:
    """The tunneld role's filters."""

    def filters(self):
        return {
            "to_tunneld_toml": to_tunneld_toml,
            "tunneld_newest_deb": tunneld_newest_deb,
            "tunneld_authorized_keys": tunneld_authorized_keys,
        }
