#!/usr/bin/env python3
"""Generate single_include/iwsec/iwsec.hpp from include/iwsec/.

Starting at include/iwsec/iwsec.hpp, every #include of one of iwsec's own
headers ("file.hpp" relative to the including header, or <iwsec/...>) is
replaced by that header's text the first time it is seen, and dropped after
that, so each header appears once, after everything it depends on. Its
`#pragma once` is dropped; the generated file has one of its own. System and
third-party includes (<httplib.h>, <picojson.h>, <openssl/...>, the standard
library) stay exactly as written. New headers are picked up automatically as
soon as something reachable from iwsec.hpp includes them.

    python3 scripts/amalgamate.py           # regenerate the committed file
    python3 scripts/amalgamate.py --check   # exit 1 if it is out of date

Python 3 standard library only. The output depends only on the contents of
include/ (no dates, no absolute paths), so it is byte-for-byte reproducible.
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE_DIR = os.path.join(ROOT, "include")
ENTRY = os.path.join(INCLUDE_DIR, "iwsec", "iwsec.hpp")
OUTPUT = os.path.join(ROOT, "single_include", "iwsec", "iwsec.hpp")

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
PRAGMA_ONCE_RE = re.compile(r"^\s*#\s*pragma\s+once\s*$")
VERSION_RE = re.compile(r'^#define IWSEC_VERSION_STRING "([^"]+)"', re.MULTILINE)


class AmalgamationError(Exception):
    pass


def rel(path):
    return os.path.relpath(path, INCLUDE_DIR).replace(os.sep, "/")


def own_header(including_file, delimiter, name):
    """The path of an iwsec header that this include names, else None."""
    if delimiter == '"':
        candidate = os.path.normpath(os.path.join(os.path.dirname(including_file), name))
    elif name.startswith("iwsec/"):
        candidate = os.path.normpath(os.path.join(INCLUDE_DIR, name))
    else:
        return None
    if not candidate.startswith(os.path.join(INCLUDE_DIR, "iwsec") + os.sep):
        raise AmalgamationError("%s includes %s%s, outside include/iwsec"
                                % (rel(including_file), delimiter, name))
    if not os.path.isfile(candidate):
        raise AmalgamationError("%s includes %s, which does not exist" % (rel(including_file), name))
    return candidate


def expand(path, seen, stack, out):
    if path in stack:
        chain = " -> ".join(rel(p) for p in stack + [path])
        raise AmalgamationError("include cycle: " + chain)
    seen.add(path)
    stack.append(path)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if "\r" in text:
        raise AmalgamationError("%s has CR line endings" % rel(path))
    out.append("// ----- begin %s -----\n" % rel(path))
    for line in text.splitlines(keepends=True):
        if PRAGMA_ONCE_RE.match(line):
            continue
        match = INCLUDE_RE.match(line)
        if match:
            header = own_header(path, match.group(1), match.group(2))
            if header is not None:
                if header not in seen:
                    expand(header, seen, stack, out)
                continue
        out.append(line)
    if out and not out[-1].endswith("\n"):
        out.append("\n")
    out.append("// ----- end %s -----\n" % rel(path))
    stack.pop()


def amalgamate():
    with open(os.path.join(INCLUDE_DIR, "iwsec", "version.hpp"), encoding="utf-8") as f:
        version = VERSION_RE.search(f.read())
    if not version:
        raise AmalgamationError("include/iwsec/version.hpp has no IWSEC_VERSION_STRING")
    body = []
    seen = set()
    expand(ENTRY, seen, [], body)
    unreachable = []
    for directory, subdirs, files in os.walk(os.path.join(INCLUDE_DIR, "iwsec")):
        # iwsec/postgres/ is the optional cluster backend (it needs libpq):
        # never part of the single header.
        if os.path.normpath(directory) == os.path.join(INCLUDE_DIR, "iwsec"):
            subdirs[:] = [d for d in subdirs if d != "postgres"]
        for name in files:
            full = os.path.normpath(os.path.join(directory, name))
            if name.endswith(".hpp") and full not in seen:
                unreachable.append(rel(full))
    if unreachable:
        raise AmalgamationError("not reachable from include/iwsec/iwsec.hpp, so missing from the "
                                "single header: " + ", ".join(sorted(unreachable)))
    banner = (
        "// iwsec %s: the Infoworks REST API v3 security endpoints for cpp-httplib.\n"
        "// Copyright (c) 2026 the iwsec authors. MIT licence: the LICENSE file of\n"
        "// the repository, also at https://opensource.org/licenses/MIT\n"
        "// SPDX-License-Identifier: MIT\n"
        "//\n"
        "// GENERATED FILE, DO NOT EDIT. This is the amalgamation of include/iwsec/,\n"
        "// made by scripts/amalgamate.py; edit the headers under include/ and run\n"
        "//     python3 scripts/amalgamate.py\n"
        "//\n"
        "// It needs only what the headers need: <httplib.h> (with the host's\n"
        "// CPPHTTPLIB_* flags, see the README), <picojson.h> and OpenSSL's libcrypto.\n"
        "#pragma once\n"
        "\n" % version.group(1))
    return banner + "".join(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the committed file differs")
    parser.add_argument("--output", default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        generated = amalgamate()
    except AmalgamationError as e:
        print("amalgamate.py: error: %s" % e, file=sys.stderr)
        return 2
    shown = os.path.relpath(args.output, ROOT)
    if args.check:
        try:
            with open(args.output, encoding="utf-8", newline="") as f:
                committed = f.read()
        except FileNotFoundError:
            committed = None
        if committed == generated:
            print("%s is up to date" % shown)
            return 0
        reason = "is missing" if committed is None else "differs from what include/ generates"
        print("amalgamate.py: %s %s; run: python3 scripts/amalgamate.py "
              "and commit the result" % (shown, reason), file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="") as f:
        f.write(generated)
    print("wrote %s" % shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
