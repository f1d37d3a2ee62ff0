"""Main text of an HTML page: drop what is never content, score containers by the paragraphs they hold, keep the
best one with its related siblings, prune the boilerplate left inside it, and render it with paragraph breaks
(data/extract/render.py).

Readability-style: every rule is generic (tags, roles, class/id words, text and link density); no site has a rule.
Speed matters as much as quality (a crawl extracts every page), hence the caches and the skipped retries below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from data.extract.charset import utf8_html
from data.extract.render import BLOCKS, render

# Never text a reader sees, or page furniture by its tag. `form` is not here: some sites wrap the page in one.
# Only <body> is read, so <head> is left alone. One selector: strip_tags() walks the document once per tag.
_NEVER_CONTENT = (
    "script, style, noscript, template, svg, canvas, iframe, object, embed, button, input, select, textarea, "
    "dialog, nav, aside, footer"
)
_MAYBE_HIDDEN = '[hidden], [aria-hidden="true"], [style*="none" i], [style*="hidden" i]'
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_BOILERPLATE_ROLES = (
    "[role=navigation], [role=complementary], [role=contentinfo], [role=menu], "
    "[role=menubar], [role=search], [role=alert], [role=alertdialog], [role=dialog], [role=banner]"
)

# Words in class and id values, matched against the lowercased value (IGNORECASE makes these regexes 5x slower).
# Unlikely: removed before scoring unless a content word is there too.
_UNLIKELY = re.compile(
    r"ad-break|adbox|advert|agegate|banner|breadcrumb|combx|comment|communit|cookie|consent|disqus|extra|foot"
    r"|gdpr|header|legend|masthead|menu|modal|newsletter|outbrain|pager|paginat|popup|promo|related|remark"
    r"|replies|rss|share|shoutbox|sidebar|skyscraper|social|sponsor|subscri|supplement|taboola|toolbar|widget"
)
_MAYBE_CONTENT = re.compile(r"article|body|column|content|main|shadow|story|entry")
# schema.org's name for the text of an article: a stronger witness than any class name.
_ARTICLE_BODY = re.compile(r"articleBody|text\b", re.IGNORECASE)
# Weights: a class or id naming content or boilerplate moves a container by +-25.
_POSITIVE = re.compile(
    r"article|body|content|entry|hentry|h-entry|main|page|pagination|post|text|blog|story"
)
_NEGATIVE = re.compile(
    r"-ad-|hidden|^hid$| hid$| hid |^hid |banner|combx|comment|com-|contact|foot|footer|footnote|gdpr|masthead"
    r"|media|meta|outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|tool"
    r"|widget|byline|author|dateline|cookie|newsletter|subscribe"
)
_KEEP_EVEN_IF_UNLIKELY = frozenset({"body", "html", "a", "article", "main", "table", "tbody", "tr", "td", "th"})

# Always one paragraph, whatever they hold.
_PARAGRAPHS = frozenset({"p", "pre", "td"})
# One paragraph when they hold no block; otherwise their own loose text is one.
# Only blocks: a block inside another makes the outer one hold a block, so a run of text is scored once.
_CONTAINERS = frozenset({"div", "section", "article", "main", "li", "blockquote", "center", "dd"})
_TAG_SCORE = {
    "div": 5, "article": 5, "main": 5, "section": 3, "pre": 3, "td": 3, "blockquote": 3,
    "address": -3, "ol": -3, "ul": -3, "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3,
    "h1": -5, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5, "th": -5,
}
_COMMAS = re.compile(r"[,，、،;；]")
_SENTENCE_END = re.compile(r"\.( |$)")
_MIN_PARAGRAPH = 25
_ANCESTOR_LEVELS = 5
_ALTERNATIVES = 5
# Fewer characters than this means a pass was too eager: extract again with the next, gentler one.
_RETRY_CHARS = 500


@dataclass(frozen=True)
class _Pass:
    drop_unlikely: bool
    weigh_classes: bool
    prune: bool


_PASSES = (_Pass(True, True, True), _Pass(False, True, True), _Pass(False, False, True), _Pass(False, False, False))


def extract_html(html: bytes | str, url: str | None = None, *, charset: str | None = None) -> str:
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
        previous = _Extraction(tree, mode)
        got = previous.run()
        if len(got) >= _RETRY_CHARS:
            return got
        if len(got) > len(best):
            best = got
    return best


class _Extraction:
    """One pass over one parsed page; remembers which of its rules acted, so retries can be skipped."""

    def __init__(self, tree: LexborHTMLParser, mode: _Pass) -> None:
        self.tree = tree
        assert tree.body is not None  # the caller returns "" for a page without a body before this
        self.body: LexborNode = tree.body
        self.mode = mode
        self.dropped_unlikely = False
        self.weighed = False
        self.pruned = False
        self._link_chars: dict[int, int] = {}  # by mem_id; LexborNode's == compares serialised HTML, too slow

    def would_change(self, mode: _Pass) -> bool:
        return (
            self.mode.drop_unlikely and not mode.drop_unlikely and self.dropped_unlikely
            or self.mode.weigh_classes and not mode.weigh_classes and self.weighed
            or self.mode.prune and not mode.prune and self.pruned
        )

    def run(self) -> str:
        body = self.body
        # css() may return the body itself, which must stay; a node whose parent is gone was inside one removed.
        for node in body.css(_NEVER_CONTENT) + body.css(_BOILERPLATE_ROLES):
            if node.parent is not None and node.tag != "body":
                node.decompose()
        for node in body.css(_MAYBE_HIDDEN):
            if node.parent is not None and node.tag != "body" and _is_hidden(node):
                node.decompose()
        if self.mode.drop_unlikely:
            for node in body.css("[class], [id]"):
                if node.parent is not None and _is_unlikely(node):
                    node.decompose()
                    self.dropped_unlikely = True
        article = self._best_container()
        if self.mode.prune:
            self._prune(article)
        return render(article)

    # -- measures ---------------------------------------------------------------------------------------------

    def weight(self, node: LexborNode) -> int:
        if not self.mode.weigh_classes:
            return 0
        attrs = node.attributes
        weight = sum(_hint_weight(value) for value in (attrs.get("class"), attrs.get("id")) if value)
        self.weighed = self.weighed or weight != 0
        return weight

    def link_density(self, node: LexborNode, text_chars: int) -> float:
        if text_chars == 0:
            return 0.0
        cache = self._link_chars
        linked = 0
        for link in node.css("a"):
            key = link.mem_id
            if key not in cache:
                cache[key] = len(_text(link))
            linked += cache[key]
        return min(1.0, linked / text_chars)

    # -- choosing the article ---------------------------------------------------------------------------------

    def _best_container(self) -> LexborNode:
        candidates = _Candidates(self)
        for node, text, pieces in _paragraphs(self.body):
            chars = len(text)
            if chars < _MIN_PARAGRAPH:
                continue
            pieces_or_one = max(pieces, 1)
            score = pieces_or_one + len(_COMMAS.findall(text)) + min(chars // 100, 3 * pieces_or_one)
            container = node if pieces < 0 else node.parent
            if container is not None:
                candidates.add(container, score)
        ranked = candidates.best(_ALTERNATIVES + 1)
        if not ranked:
            return self.body
        top = _shared_ancestor(ranked[0], ranked[1:], candidates)
        top = _climb(top, candidates)
        while top.parent is not None and top.parent.tag != "body" and _only_child(top):
            top = top.parent
        return self._with_siblings(top, candidates)

    def _with_siblings(self, top: LexborNode, candidates: _Candidates) -> LexborNode:
        """The winner plus siblings that score well or read as prose (an article split by an ad or a figure)."""
        parent = top.parent
        if parent is None:
            return top
        top_score = candidates.score(top) or 0
        threshold = max(10.0, top_score * 0.2)
        top_class = top.attributes.get("class")
        keep = {top.mem_id}
        for sibling in parent.iter():
            key = sibling.mem_id
            if key == top.mem_id:
                continue
            bonus = top_score * 0.2 if top_class and sibling.attributes.get("class") == top_class else 0
            score = candidates.score(sibling)
            if score is not None and score + bonus >= threshold:
                keep.add(key)
            elif sibling.tag == "p":
                text = _text(sibling)
                chars = len(text)
                density = self.link_density(sibling, chars)
                if chars > 80 and density < 0.25 or 0 < chars <= 80 and density == 0 and _SENTENCE_END.search(text):
                    keep.add(key)
        if len(keep) == 1:
            return top
        for sibling in list(parent.iter()):
            if sibling.mem_id not in keep:
                sibling.decompose()
        return parent

    # -- cleaning the article ---------------------------------------------------------------------------------

    def _prune(self, article: LexborNode) -> None:
        """Drop the boilerplate inside the article: link lists, share bars, forms, galleries, stray headings."""
        for node in article.css("h1, h2, h3"):
            if self.weight(node) < 0 or self.link_density(node, len(_text(node))) > 0.33:
                node.decompose()
                self.pruned = True
        # Innermost first, so a container is judged on what is left inside it.
        for node in reversed(article.css("form, fieldset, table, ul, ol, div, section, aside, header")):
            if node.parent is None or node.mem_id == article.mem_id or _is_wrapper(node) and self.weight(node) >= 0:
                continue
            if self._is_boilerplate(node):
                node.decompose()
                self.pruned = True

    def _is_boilerplate(self, node: LexborNode) -> bool:
        weight = self.weight(node)
        if weight < 0:
            return True
        text = _text(node)
        if len(_COMMAS.findall(text)) >= 10:
            return False
        tag = node.tag
        if tag == "table" and _is_data_table(node):
            return False
        counts = {"p": 0, "img": 0, "li": 0, "input": 0, "embed": 0}
        for inner in node.css("p, img, li, input, video, audio, embed, object, iframe"):
            inner_tag = inner.tag
            counts[inner_tag if inner_tag in counts else "embed"] += 1
        paragraphs, images, inputs, embeds = counts["p"], counts["img"], counts["input"], counts["embed"]
        chars = len(text)
        is_list = tag in ("ul", "ol")
        return (
            images > 1 and paragraphs / images < 0.5
            or not is_list and counts["li"] - 100 > paragraphs
            or inputs > paragraphs // 3
            or not is_list and chars < _MIN_PARAGRAPH and (images == 0 or images > 2)
            or embeds == 1 and chars < 75
            or embeds > 1
            or self.link_density(node, chars) > (0.2 if weight < 25 else 0.5)
        )


class _Candidates:
    """Containers scored by the paragraphs inside them, discounted by their link density when first read."""

    def __init__(self, page: _Extraction) -> None:
        self.page = page
        self.raw: dict[int, float] = {}
        self.nodes: dict[int, LexborNode] = {}
        self.final: dict[int, float] = {}
        # The container and its ancestors up to _ANCESTOR_LEVELS, by mem_id: siblings share them, and walking
        # .parent builds a new Python object at every step.
        self._lineage: dict[int, tuple[int, ...]] = {}

    def add(self, container: LexborNode, score: float) -> None:
        """Credit a paragraph's score to its container, half to the next ancestor, less further up."""
        raw = self.raw
        for level, key in enumerate(self._lineage_of(container)):
            raw[key] += score / (1 if level == 0 else 2 if level == 1 else level * 3)

    def _lineage_of(self, node: LexborNode) -> tuple[int, ...]:
        start = node.mem_id
        lineage = self._lineage.get(start)
        if lineage is None:
            keys: list[int] = []
            current: LexborNode | None = node
            while current is not None and current.tag != "html" and len(keys) < _ANCESTOR_LEVELS:
                key = current.mem_id
                if key not in self.raw:
                    self.nodes[key] = current
                    # a node without a tag name (None) scores like any tag missing from the table
                    self.raw[key] = _TAG_SCORE.get(current.tag or "", 0) + self.page.weight(current)
                keys.append(key)
                current = current.parent
            lineage = self._lineage[start] = tuple(keys)
        return lineage

    def score(self, node: LexborNode) -> float | None:
        key = node.mem_id
        if key not in self.raw:
            return None
        return self._discounted(key, node)

    def _discounted(self, key: int, node: LexborNode) -> float:
        if key not in self.final:
            self.final[key] = self.raw[key] * (1 - self.page.link_density(node, len(_text(node))))
        return self.final[key]

    def best(self, n: int) -> list[LexborNode]:
        """The n best by discounted score. Discounting only lowers a score, so once a raw score cannot beat the
        n-th best discounted one, no later candidate can: most candidates never pay for their link density."""
        ranked: list[tuple[float, int]] = []
        for key in sorted(self.raw, key=self.raw.__getitem__, reverse=True):
            if len(ranked) == n and self.raw[key] <= ranked[-1][0]:
                break
            ranked.append((self._discounted(key, self.nodes[key]), key))
            ranked.sort(reverse=True)
            del ranked[n:]
        return [self.nodes[key] for _, key in ranked]


def _paragraphs(body: LexborNode):
    """(node, text, pieces) for each run of text that reads as a paragraph.

    pieces > 0: the node is the paragraph; it holds that many paragraphs split by double <br>.
    pieces < 0: the text is loose text directly inside a container that also holds blocks; it counts as one
    paragraph whose parent is the container itself.
    """
    for node in body.traverse():
        tag = node.tag
        if tag in _PARAGRAPHS:
            yield node, _text(node), 1
        elif tag in _CONTAINERS:
            breaks = _inline_only(node)
            if breaks >= 0:
                yield node, _text(node), breaks + 1
            else:
                loose = node.text(deep=False, strip=True)
                if len(loose) >= _MIN_PARAGRAPH:
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


def _shared_ancestor(top: LexborNode, others: list[LexborNode], candidates: _Candidates) -> LexborNode:
    """An article cut into sections scores each section alone; when three strong runners-up sit under one
    ancestor of the winner, that ancestor is the article."""
    top_score = candidates.score(top) or 0
    strong = [node for node in others if (candidates.score(node) or 0) >= top_score * 0.75]
    if len(strong) < 3:
        return top
    lineages = [_ancestor_ids(node) for node in strong]
    ancestor = top.parent
    while ancestor is not None and ancestor.tag != "body":
        if sum(ancestor.mem_id in lineage for lineage in lineages) >= 3:
            return ancestor
        ancestor = ancestor.parent
    return top


def _ancestor_ids(node: LexborNode) -> set[int]:
    ids = set()
    ancestor = node.parent
    while ancestor is not None:
        ids.add(ancestor.mem_id)
        ancestor = ancestor.parent
    return ids


def _climb(top: LexborNode, candidates: _Candidates) -> LexborNode:
    """Adopt an ancestor that outscores the chain below it: it holds more of the article than the winner.
    Stop at one scoring under a third of the winner: from there on it is the page, not the article."""
    last = candidates.score(top) or 0
    floor = last / 3
    ancestor = top.parent
    while ancestor is not None and ancestor.tag not in ("body", "html"):
        score = candidates.score(ancestor)
        if score is not None:
            if score < floor:
                break
            if score > last:
                return ancestor
            last = score
        ancestor = ancestor.parent
    return top


def _only_child(node: LexborNode) -> bool:
    parent = node.parent
    return parent is not None and sum(1 for _ in parent.iter()) == 1


def _is_hidden(node: LexborNode) -> bool:
    attrs = node.attributes
    if "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    return bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))


def _is_unlikely(node: LexborNode) -> bool:
    if node.tag in _KEEP_EVEN_IF_UNLIKELY:
        return False
    attrs = node.attributes
    verdicts = [_hint_verdict(value) for value in (attrs.get("class"), attrs.get("id")) if value]
    if not any(unlikely for unlikely, _ in verdicts) or any(content for _, content in verdicts):
        return False
    if _ARTICLE_BODY.match(attrs.get("itemprop") or ""):
        return False
    # Inside a table or code block a stray class word is layout, not boilerplate.
    parent = node.parent
    while parent is not None and parent.tag != "body":
        if parent.tag in ("table", "pre", "code"):
            return False
        parent = parent.parent
    return True


# Pages repeat the same class values hundreds of times; without a cache the regexes are the costliest step.
@lru_cache(maxsize=8192)
def _hint_verdict(value: str) -> tuple[bool, bool]:
    """(names boilerplate, names content) for one class or id value."""
    value = value.lower()
    return bool(_UNLIKELY.search(value)), bool(_MAYBE_CONTENT.search(value))


@lru_cache(maxsize=8192)
def _hint_weight(value: str) -> int:
    value = value.lower()
    return (-25 if _NEGATIVE.search(value) else 0) + (25 if _POSITIVE.search(value) else 0)


def _text(node: LexborNode) -> str:
    """Text for measuring, not for output: each text node stripped (markup indentation is not text) and joined
    with nothing, in C. Words at tag boundaries run together, which costs a character, not a word count."""
    return node.text(strip=True)


def _is_data_table(table: LexborNode) -> bool:
    attrs = table.attributes
    if attrs.get("role") == "presentation" or attrs.get("datatable") == "0":
        return False
    if attrs.get("summary") or table.css_first("caption, thead, tfoot, colgroup, col, th") is not None:
        return True
    if table.css_first("table") is not None:
        return False
    rows = table.css("tr")
    if len(rows) >= 10:
        return True
    cells = max((len(row.css("td, th")) for row in rows), default=0)
    return cells > 4 or len(rows) * cells > 10
