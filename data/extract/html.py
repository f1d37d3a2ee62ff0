"""Main text of an HTML page: drop what is never content, score containers by the paragraphs they hold, keep the
best one with its related siblings, prune the boilerplate left inside it, and render it with paragraph breaks
(data/extract/render.py).

Readability-style: every rule is generic (tags, roles, class/id words, text and link density); no site has a rule.
Every threshold is a field of `ExtractionSettings` (data/extract/html_settings.py); the scores and the rules that
read them live in data/extract/candidates.py, this file changes the tree. Speed matters as much as quality (a crawl
extracts every page), hence the caches and the skipped retries below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from data.extract.candidates import Candidates, climb, measured_text, shared_ancestor
from data.extract.charset import utf8_html
from data.extract.html_settings import DEFAULTS, ExtractionSettings, regex
from data.extract.render import BLOCKS, render

# What hides an element is the browser's rule, not a threshold to tune. The selector only narrows the candidates
# that _is_hidden() reads.
_MAYBE_HIDDEN = '[hidden], [aria-hidden="true"], [style*="none" i], [style*="hidden" i]'
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


@dataclass(frozen=True)
class _Pass:
    """Which rules one pass applies. The passes, each gentler than the last, are the method, not a setting."""

    drop_unlikely: bool
    weigh_classes: bool
    prune: bool


_PASSES = (_Pass(True, True, True), _Pass(False, True, True), _Pass(False, False, True), _Pass(False, False, False))


def extract_html(
    html: bytes | str, url: str | None = None, *, charset: str | None = None, settings: ExtractionSettings = DEFAULTS
) -> str:
    """The main text of a page, paragraphs separated by a blank line; "" when there is none.

    `charset` is the HTTP header's value, if any; it is checked against the bytes like a `<meta>` declaration.
    `url` is accepted for callers that have it (the scorer passes it); no rule depends on the site.
    """
    # The parser reads UTF-8 bytes; a str (possibly with lone surrogates from a JSON source) is encoded here.
    data = html.encode("utf-8", errors="replace") if isinstance(html, str) else utf8_html(html, charset)
    best = ""
    previous: _Extraction | None = None
    for mode in _PASSES:
        # A gentler pass whose relaxation had nothing to act on in the last one would return the same text.
        if previous is not None and not previous.would_change(mode):
            continue
        tree = LexborHTMLParser(data)
        if tree.body is None:
            return ""
        previous = _Extraction(tree, mode, settings)
        got = previous.run()
        # Fewer characters means the pass was too eager: extract again with the next, gentler one.
        if len(got) >= settings.retry_chars:
            return got
        if len(got) > len(best):
            best = got
    return best


class _Extraction:
    """One pass over one parsed page; run() records which of its rules acted, so retries can be skipped."""

    def __init__(self, tree: LexborHTMLParser, mode: _Pass, settings: ExtractionSettings = DEFAULTS) -> None:
        self.tree = tree
        assert tree.body is not None  # the caller returns "" for a page without a body before this
        self.body: LexborNode = tree.body
        self.mode = mode
        self.settings = settings
        self.dropped_unlikely = False
        self.weighed = False  # some class or id weight read in this pass was not 0
        self.pruned = False
        # Link text length by mem_id (LexborNode's == compares serialised HTML, too slow), as first measured: a link
        # that pruning shortens later keeps its first length, so this memo is part of the scores, not only speed.
        self._link_chars: dict[int, int] = {}

    def would_change(self, mode: _Pass) -> bool:
        return (
            self.mode.drop_unlikely and not mode.drop_unlikely and self.dropped_unlikely
            or self.mode.weigh_classes and not mode.weigh_classes and self.weighed
            or self.mode.prune and not mode.prune and self.pruned
        )

    def run(self) -> str:
        body, settings = self.body, self.settings
        # css() may return the body itself, which must stay; a node whose parent is gone was inside one removed.
        for node in body.css(settings.never_content) + body.css(settings.boilerplate_roles):
            if node.parent is not None and node.tag != "body":
                node.decompose()
        for node in body.css(_MAYBE_HIDDEN):
            if node.parent is not None and node.tag != "body" and _is_hidden(node):
                node.decompose()
        if self.mode.drop_unlikely:
            for node in body.css("[class], [id]"):
                if node.parent is not None and _is_unlikely(node, settings):
                    node.decompose()
                    self.dropped_unlikely = True
        article, self.weighed = self._best_container()
        if self.mode.prune:
            self.pruned, weighed_inside = self._prune(article)
            self.weighed = self.weighed or weighed_inside
        return render(article)

    # -- measures: they change neither the page nor what the pass records (link_density memoises link text) --

    def weight(self, node: LexborNode) -> int:
        """What the node's class and id words say, +-class_weight each; 0 in a pass that ignores them."""
        if not self.mode.weigh_classes:
            return 0
        settings, attrs = self.settings, node.attributes
        words = settings.negative, settings.positive, settings.class_weight
        return sum(_hint_weight(value, *words) for value in (attrs.get("class"), attrs.get("id")) if value)

    def link_density(self, node: LexborNode, text_chars: int) -> float:
        if text_chars == 0:
            return 0.0
        cache = self._link_chars
        linked = 0
        for link in node.css("a"):
            key = link.mem_id
            if key not in cache:
                cache[key] = len(measured_text(link))
            linked += cache[key]
        return min(1.0, linked / text_chars)

    # -- choosing the article ---------------------------------------------------------------------------------

    def _best_container(self) -> tuple[LexborNode, bool]:
        """The article, and whether a class weight that was not 0 went into a score."""
        settings = self.settings
        candidates = Candidates(self)
        commas = regex(settings.commas)
        for node, text, pieces in _paragraphs(self.body, settings):
            chars = len(text)
            if chars < settings.min_paragraph:
                continue
            pieces_or_one = max(pieces, 1)
            length_points = min(chars // settings.chars_per_point, settings.length_points_per_piece * pieces_or_one)
            score = pieces_or_one + len(commas.findall(text)) + length_points
            container = node if pieces < 0 else node.parent
            if container is not None:
                candidates.add(container, score)
        ranked = candidates.best(settings.alternatives + 1)
        if not ranked:
            return self.body, candidates.weighed
        top = shared_ancestor(ranked[0], ranked[1:], candidates, settings)
        top = climb(top, candidates, settings)
        while top.parent is not None and top.parent.tag != "body" and _only_child(top):
            top = top.parent
        return self._with_siblings(top, candidates), candidates.weighed

    def _with_siblings(self, top: LexborNode, candidates: Candidates) -> LexborNode:
        """The winner plus siblings that score well or read as prose (an article split by an ad or a figure)."""
        parent = top.parent
        if parent is None:
            return top
        settings = self.settings
        top_score = candidates.score(top) or 0
        threshold = max(settings.sibling_min_score, top_score * settings.sibling_share)
        top_class = top.attributes.get("class")
        long_paragraph = settings.sibling_long_paragraph
        keep = {top.mem_id}
        for sibling in parent.iter():
            key = sibling.mem_id
            if key == top.mem_id:
                continue
            same_class = top_class and sibling.attributes.get("class") == top_class
            bonus = top_score * settings.same_class_bonus if same_class else 0
            score = candidates.score(sibling)
            if score is not None and score + bonus >= threshold:
                keep.add(key)
            elif sibling.tag == "p":
                text = measured_text(sibling)
                chars = len(text)
                density = self.link_density(sibling, chars)
                if (
                    chars > long_paragraph and density < settings.sibling_link_density
                    or 0 < chars <= long_paragraph and density == 0 and regex(settings.sentence_end).search(text)
                ):
                    keep.add(key)
        if len(keep) == 1:
            return top
        for sibling in list(parent.iter()):
            if sibling.mem_id not in keep:
                sibling.decompose()
        return parent

    # -- cleaning the article ---------------------------------------------------------------------------------

    def _prune(self, article: LexborNode) -> tuple[bool, bool]:
        """Drop the boilerplate inside the article: link lists, share bars, forms, galleries, stray headings.
        Returns whether anything was dropped, and whether a class weight read on the way was not 0."""
        settings = self.settings
        pruned = weighed = False
        for node in article.css(settings.headings):
            weight = self.weight(node)
            weighed = weighed or weight != 0
            if weight < 0 or self.link_density(node, len(measured_text(node))) > settings.heading_link_density:
                node.decompose()
                pruned = True
        # Innermost first, so a container is judged on what is left inside it.
        for node in reversed(article.css(settings.prunable)):
            if node.parent is None or node.mem_id == article.mem_id:
                continue
            weight = self.weight(node)
            weighed = weighed or weight != 0
            if _is_wrapper(node) and weight >= 0:
                continue
            if self._is_boilerplate(node, weight):
                node.decompose()
                pruned = True
        return pruned, weighed

    def _is_boilerplate(self, node: LexborNode, weight: int) -> bool:
        if weight < 0:
            return True
        settings = self.settings
        text = measured_text(node)
        if len(regex(settings.commas).findall(text)) >= settings.prose_commas:
            return False
        tag = node.tag
        if tag == "table" and _is_data_table(node, settings):
            return False
        counts = {"p": 0, "img": 0, "li": 0, "input": 0, "embed": 0}
        for inner in node.css("p, img, li, input, video, audio, embed, object, iframe"):
            inner_tag = inner.tag
            counts[inner_tag if inner_tag in counts else "embed"] += 1
        paragraphs, images, inputs, embeds = counts["p"], counts["img"], counts["input"], counts["embed"]
        chars = len(text)
        is_list = tag in ("ul", "ol")
        # A content word in the class or id vouches for a container with more of its text in links.
        max_density = settings.vouched_link_density if weight >= settings.class_weight else settings.max_link_density
        return (
            images > 1 and paragraphs / images < settings.paragraphs_per_image
            or not is_list and counts["li"] - settings.extra_list_items > paragraphs
            or inputs > paragraphs // settings.paragraphs_per_input
            or not is_list and chars < settings.min_paragraph and (images == 0 or images > settings.figure_images)
            or embeds == 1 and chars < settings.embed_min_chars
            or embeds > 1
            or self.link_density(node, chars) > max_density
        )


def _paragraphs(body: LexborNode, settings: ExtractionSettings):
    """(node, text, pieces) for each run of text that reads as a paragraph.

    pieces > 0: the node is the paragraph; it holds that many paragraphs split by double <br>.
    pieces < 0: the text is loose text directly inside a container that also holds blocks; it counts as one
    paragraph whose parent is the container itself.
    """
    for node in body.traverse():
        tag = node.tag
        if tag in settings.paragraphs:
            yield node, measured_text(node), 1
        elif tag in settings.containers:
            breaks = _inline_only(node)
            if breaks >= 0:
                yield node, measured_text(node), breaks + 1
            else:
                loose = node.text(deep=False, strip=True)
                if len(loose) >= settings.min_paragraph:
                    yield node, loose, -1


def _inline_only(node: LexborNode) -> int:
    """-1 when the node holds a block element, else the number of double <br> inside it."""
    breaks = 0
    pending = [node]  # a stack, not recursion: hostile pages nest inline tags thousands deep
    while pending:
        for child in pending.pop().iter():
            tag = child.tag
            if tag in BLOCKS:
                return -1
            if tag == "br":
                breaks += _double_br(child)
            elif child.first_child is not None:
                pending.append(child)
    return breaks


def _is_wrapper(node: LexborNode) -> bool:
    """A div or section around a single element and no text of its own: it reads as that element, which was
    judged already. Skipping wrappers also keeps a page of nested divs from costing depth squared."""
    if node.tag not in ("div", "section"):
        return False
    child = node.first_child
    elements = 0
    while child is not None:
        if child.is_element_node:
            elements += 1
            if elements > 1:
                return False
        elif child.is_text_node and (child.text_content or "").strip():  # None: a text node with no data
            return False
        child = child.next
    return elements == 1


def _double_br(br: LexborNode) -> bool:
    nxt = br.next
    while nxt is not None and nxt.is_text_node and not (nxt.text_content or "").strip():
        nxt = nxt.next
    return nxt is not None and nxt.tag == "br"


def _only_child(node: LexborNode) -> bool:
    parent = node.parent
    return parent is not None and sum(1 for _ in parent.iter()) == 1


def _is_hidden(node: LexborNode) -> bool:
    attrs = node.attributes
    if "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    return bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))


def _is_unlikely(node: LexborNode, settings: ExtractionSettings) -> bool:
    if node.tag in settings.keep_even_if_unlikely:
        return False
    attrs = node.attributes
    words = settings.unlikely, settings.maybe_content
    verdicts = [_hint_verdict(value, *words) for value in (attrs.get("class"), attrs.get("id")) if value]
    if not any(unlikely for unlikely, _ in verdicts) or any(content for _, content in verdicts):
        return False
    if regex(settings.article_body).match(attrs.get("itemprop") or ""):
        return False
    # Inside a table or code block a stray class word is layout, not boilerplate.
    parent = node.parent
    while parent is not None and parent.tag != "body":
        if parent.tag in settings.layout_ancestors:
            return False
        parent = parent.parent
    return True


# Pages repeat the same class values hundreds of times; without a cache the regexes are the costliest step.
@lru_cache(maxsize=8192)
def _hint_verdict(value: str, unlikely: str, content: str) -> tuple[bool, bool]:
    """(names boilerplate, names content) for one class or id value."""
    value = value.lower()
    return bool(regex(unlikely).search(value)), bool(regex(content).search(value))


@lru_cache(maxsize=8192)
def _hint_weight(value: str, negative: str, positive: str, weight: int) -> int:
    value = value.lower()
    return (-weight if regex(negative).search(value) else 0) + (weight if regex(positive).search(value) else 0)


def _is_data_table(table: LexborNode, settings: ExtractionSettings) -> bool:
    attrs = table.attributes
    if attrs.get("role") == "presentation" or attrs.get("datatable") == "0":
        return False
    if attrs.get("summary") or table.css_first("caption, thead, tfoot, colgroup, col, th") is not None:
        return True
    if table.css_first("table") is not None:
        return False
    rows = table.css("tr")
    if len(rows) >= settings.data_table_rows:
        return True
    cells = max((len(row.css("td, th")) for row in rows), default=0)
    return cells > settings.data_table_columns or len(rows) * cells > settings.data_table_cells
