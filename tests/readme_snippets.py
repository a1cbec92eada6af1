"""Every ```cpp block of the given Markdown files compiles against include/.

  readme_snippets.py --cxx CXX --include DIR FILE.md...

A block with `int main` is a whole program: compiled and linked as written.
Any other block is a fragment: compiled inside a function that provides what
the docs' fragments talk about (`server`, `users`, `signer`, `options`). Both
with cpp-httplib's and libcrypto's pkg-config flags, exactly as the README
tells a reader to build (`c++ -std=c++17 -Iinclude main.cpp $(pkg-config
--cflags --libs cpp-httplib libcrypto)`).

"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

FRAGMENT_PRELUDE = """#include <chrono>
#include <memory>
#include <stdexcept>
#include <httplib.h>
#include <iwsec/iwsec.hpp>
void snippet(httplib::Server& server, iwsec::UserStore& users, iwsec::Signer& signer, iwsec::Options& options) {
  (void)server; (void)users; (void)signer; (void)options;
  {  // an inner block: a fragment may declare its own `users` or `options`
"""
FRAGMENT_END = "\n  }\n}\n"

COMPILE_TIMEOUT = 300


def cpp_blocks(path):
    """(line number, text) of each ```cpp block of @p path."""
    blocks, current, start = [], None, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if current is None and line.rstrip() == "```cpp":
                current, start = [], number + 1
            elif current is not None and line.rstrip() == "```":
                blocks.append((start, "".join(current)))
                current = None
            elif current is not None:
                current.append(line)
    if current is not None:
        raise SystemExit("%s:%d: unterminated ```cpp block" % (path, start))
    return blocks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cxx", required=True)
    parser.add_argument("--include", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "cpp-httplib", "libcrypto"], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.split()
    failures, compiled = [], 0
    with tempfile.TemporaryDirectory(prefix="iwsec-snippets-") as work:
        for path in args.files:
            for line, text in cpp_blocks(path):
                where = "%s:%d" % (os.path.relpath(path), line)
                program = re.search(r"\bint\s+main\s*\(", text) is not None
                source = os.path.join(work, "snippet%d.cpp" % compiled)
                with open(source, "w", encoding="utf-8") as f:
                    f.write('#line %d "%s"\n' % (line, where.rsplit(":", 1)[0]) + text if program
                            else FRAGMENT_PRELUDE + '#line %d "%s"\n' % (line, where.rsplit(":", 1)[0]) + text
                            + FRAGMENT_END)
                output = os.path.join(work, "snippet%d%s" % (compiled, "" if program else ".o"))
                argv = [args.cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I" + args.include, source,
                        "-o", output] + ([] if program else ["-c"]) + flags
                result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        timeout=COMPILE_TIMEOUT)
                compiled += 1
                kind = "program" if program else "fragment"
                if result.returncode != 0:
                    failures.append(where)
                    print("%s: FAILED to compile (%s):\n  %s\n%s" % (where, kind, shlex.join(argv), result.stdout))
                else:
                    print("%s: %s compiles" % (where, kind))
    if compiled == 0:
        print("no ```cpp block found in " + ", ".join(args.files))
        return 1
    if failures:
        print("%d of %d blocks do not compile: %s" % (len(failures), compiled, ", ".join(failures)))
        return 1
    print("all %d blocks compile" % compiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
