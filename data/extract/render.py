"""The text of a chosen subtree: a blank line between blocks, a newline for <br> and inside <pre>, whitespace
collapsed. What to keep is decided before this (data/extract/html.py); this only writes it out."""

from __future__ import annotations

from selectolax.lexbor import LexborNode

# HTML's block elements: each starts a paragraph of the output. html.py's scoring reads the same set, so a run of
# text it scores as one paragraph comes out as one.
BLOCKS = frozenset(
    "address article aside blockquote body dd details dialog div dl dt fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr td th ul "
    "center caption".split()
)
# Private-use characters mark breaks while whitespace is collapsed in one pass over the whole text.
_PARAGRAPH_BREAK = "\ue000"
_LINE_BREAK = "\ue001"
# Soft hyphens (typeset pages put one between every syllable), zero-width spaces, word joiners, stray BOMs:
# invisible on the page, and they split words for a tokenizer.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


def render(root: LexborNode) -> str:
    """Text of a subtree: blank line between blocks, newline for <br> and inside <pre>, whitespace collapsed.

    Consumes the subtree: break markers are inserted as text nodes and read back with one text() call in C,
    several times faster than building the text node by node from Python.
    """
    # One walk from Python beats a 40-tag CSS selector in lexbor. traverse() starts with the root itself, whose
    # own breaks would fall outside it. A page's own U+E000/U+E001, if any, become breaks too: harmless.
    marked = [node for node in root.traverse() if node.tag in BLOCKS or node.tag == "br"]
    for node in marked[1:] if marked and marked[0].mem_id == root.mem_id else marked:
        if node.tag == "br":
            node.insert_before(_LINE_BREAK)
            continue
        node.insert_before(_PARAGRAPH_BREAK)
        node.insert_after(_PARAGRAPH_BREAK)
        if node.tag == "pre" and node.parent is not None:
            node.replace_with(node.text().replace("\n", _LINE_BREAK))
    text = root.text()
    if root.tag == "pre":
        text = text.replace("\n", _LINE_BREAK)
    # str.split() also folds no-break and other Unicode spaces; the markers are not whitespace.
    text = " ".join(text.translate(_INVISIBLE).split())
    paragraphs = []
    for paragraph in text.split(_PARAGRAPH_BREAK):
        if _LINE_BREAK in paragraph:
            paragraph = "\n".join(line for line in map(str.strip, paragraph.split(_LINE_BREAK)) if line)
        else:
            paragraph = paragraph.strip()
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)
