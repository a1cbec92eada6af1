"""The README's and docs/' relative links lead somewhere: the file exists and,
for a `#fragment` into a Markdown file, a heading of that name exists
(GitHub's anchor rule: lower case, punctuation dropped, spaces to hyphens).
"""

import glob
import os
import re
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Pages other parts of the work write (linked from the README and
# docs/README.md already). The merger takes each out once it exists.
PENDING_PAGES = set()

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def markdown_files():
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "bench", "README.md")]
    return files + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def prose_lines(path):
    """The lines of @p path outside fenced code blocks, with inline code removed."""
    inside = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                yield re.sub(r"`[^`]*`", "", line)


def anchors(path):
    out = set()
    inside = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                inside = not inside
            elif not inside and line.startswith("#"):
                title = line.lstrip("#").strip().lower()
                out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


class DocsLinksTest(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        broken = []
        checked = 0
        for source in markdown_files():
            for line in prose_lines(source):
                for target in LINK.findall(line):
                    if re.match(r"^[a-z]+:", target):
                        continue  # https:, mailto:
                    path, _, fragment = target.partition("#")
                    full = os.path.normpath(os.path.join(os.path.dirname(source), path)) if path else source
                    name = os.path.relpath(full, ROOT)
                    checked += 1
                    if name in PENDING_PAGES and not os.path.exists(full):
                        continue
                    if not os.path.exists(full):
                        broken.append("%s: %s (no such file)" % (os.path.relpath(source, ROOT), target))
                    elif fragment and full.endswith(".md") and fragment not in anchors(full):
                        broken.append("%s: %s (no such heading)" % (os.path.relpath(source, ROOT), target))
        self.assertGreater(checked, 20)
        self.assertEqual(broken, [])

    def test_pending_pages_are_still_pending(self):
        # A page that exists now is checked like any other: take it out of PENDING_PAGES.
        written = sorted(p for p in PENDING_PAGES if os.path.exists(os.path.join(ROOT, p)))
        self.assertEqual(written, [], "these pages exist now: remove them from PENDING_PAGES")


if __name__ == "__main__":
    unittest.main()
