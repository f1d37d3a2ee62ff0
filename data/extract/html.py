"""Main text of an HTML page: drop what is never content, score containers by the paragraphs they hold, keep the
best one with its related siblings, prune the boilerplate left inside it, and render it with paragraph breaks.

Readability-style: every rule is generic (tags, roles, class/id words, text and link density); no site has a rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from data.extract.charset import decode_html

# Never text a reader sees. `form` is not here: some sites wrap the whole page in one.
_NEVER_CONTENT = [
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "head",
    "button", "input", "select", "textarea", "option", "link", "meta", "dialog",
]
_HIDDEN = '[hidden], [aria-hidden="true"], [style*="none" i], [style*="hidden" i]'
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_BOILERPLATE = (
    "nav, aside, footer, [role=navigation], [role=complementary], [role=contentinfo], [role=menu], "
    "[role=menubar], [role=search], [role=alert], [role=alertdialog], [role=dialog], [role=banner]"
)

# Words in class and id values. Unlikely: removed before scoring unless a content word is there too.
_UNLIKELY = re.compile(
    r"ad-break|adbox|advert|agegate|banner|breadcrumb|combx|comment|communit|cookie|consent|disqus|extra|foot"
    r"|gdpr|header|legend|masthead|menu|modal|newsletter|outbrain|pager|paginat|popup|promo|related|remark"
    r"|replies|rss|share|shoutbox|sidebar|skyscraper|social|sponsor|subscri|supplement|taboola|toolbar|widget",
    re.IGNORECASE,
)
_MAYBE_CONTENT = re.compile(r"article|body|column|content|main|shadow|story|entry", re.IGNORECASE)
# Weights for scoring: a class or id that names content or boilerplate moves a container by +-25.
_POSITIVE = re.compile(
    r"article|body|content|entry|hentry|h-entry|main|page|pagination|post|text|blog|story", re.IGNORECASE
)
_NEGATIVE = re.compile(
    r"-ad-|hidden|^hid$| hid$| hid |^hid |banner|combx|comment|com-|contact|foot|footer|footnote|gdpr|masthead"
    r"|media|meta|outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|tool"
    r"|widget|byline|author|dateline|cookie|newsletter|subscribe",
    re.IGNORECASE,
)
# schema.org's name for the text of an article: a stronger witness than any class name.
_ARTICLE_BODY = re.compile(r"articleBody|text\b", re.IGNORECASE)
_SHARE = re.compile(r"share|sharedaddy|social", re.IGNORECASE)

_BLOCKS = frozenset(
    "address article aside blockquote body dd details dialog div dl dt fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr td th ul "
    "center caption".split()
)
# Containers whose direct text counts as a paragraph when they hold no other block.
_PARAGRAPHS = frozenset({"p", "pre", "td", "blockquote"})
_TAG_SCORE = {
    "div": 5, "article": 5, "main": 5, "section": 3, "pre": 3, "td": 3, "blockquote": 3,
    "address": -3, "ol": -3, "ul": -3, "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3,
    "h1": -5, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5, "th": -5,
}
_COMMAS = re.compile(r"[,，、،;；]")
_SENTENCE_END = re.compile(r"\.( |$)")
_MIN_PARAGRAPH = 25
_ANCESTOR_LEVELS = 5
# Fewer characters than this means the pruning was too eager: extract again with the gentler passes only.
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
    text = html if isinstance(html, str) else decode_html(html, charset)
    best = ""
    for mode in _PASSES:
        tree = LexborHTMLParser(text)
        body = tree.body
        if body is None:
            return ""
        got = _extract(tree, body, mode)
        if len(got) >= _RETRY_CHARS:
            return got
        if len(got) > len(best):
            best = got
    return best


def _extract(tree: LexborHTMLParser, body: LexborNode, mode: _Pass) -> str:
    tree.strip_tags(_NEVER_CONTENT)
    _remove(body.css(_HIDDEN), lambda n: n.tag != "body" and _is_hidden(n))
    _remove(body.css(_BOILERPLATE), lambda n: True)
    if mode.drop_unlikely:
        _remove(_with_class_or_id(body), _is_unlikely)
    article = _best_container(body, mode)
    if article is None:
        return ""
    if mode.prune:
        _prune(article, mode)
    return render(article)


def _remove(nodes: list[LexborNode], test) -> None:
    for node in nodes:
        if node.parent is not None and test(node):
            node.decompose()


def _with_class_or_id(root: LexborNode) -> list[LexborNode]:
    return root.css("[class], [id]")


def _hints(node: LexborNode) -> str:
    attrs = node.attributes
    return f"{attrs.get('class') or ''} {attrs.get('id') or ''}"


# Pages repeat the same class values hundreds of times; the regexes are the costliest step without a cache.
@lru_cache(maxsize=8192)
def _unlikely_hints(hints: str) -> bool:
    return bool(_UNLIKELY.search(hints)) and not _MAYBE_CONTENT.search(hints)


@lru_cache(maxsize=8192)
def _hint_weight(value: str) -> int:
    return (-25 if _NEGATIVE.search(value) else 0) + (25 if _POSITIVE.search(value) else 0)


def _is_hidden(node: LexborNode) -> bool:
    attrs = node.attributes
    if "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    return bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))


def _is_unlikely(node: LexborNode) -> bool:
    if node.tag in ("body", "html", "a", "article", "main", "table", "tbody", "tr", "td", "th"):
        return False
    if not _unlikely_hints(_hints(node)) or _ARTICLE_BODY.match(node.attributes.get("itemprop") or ""):
        return False
    # Inside a table or code block a stray class word is layout, not boilerplate.
    parent = node.parent
    while parent is not None and parent.tag != "body":
        if parent.tag in ("table", "pre", "code"):
            return False
        parent = parent.parent
    return True


def _class_weight(node: LexborNode) -> int:
    attrs = node.attributes
    return sum(_hint_weight(value) for value in (attrs.get("class"), attrs.get("id")) if value)


def _link_density(node: LexborNode, text_len: int | None = None) -> float:
    if text_len is None:
        text_len = len(_squash(node.text()))
    if text_len == 0:
        return 0.0
    linked = sum(len(_squash(a.text())) for a in node.css("a"))
    return min(1.0, linked / text_len)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(body: LexborNode) -> list[LexborNode]:
    """Elements that read as one paragraph: p/pre/td/blockquote, and containers holding only inline content."""
    found = []
    for node in body.traverse():
        tag = node.tag
        if tag in _PARAGRAPHS:
            found.append(node)
        elif tag in ("div", "section", "article", "li", "span", "font", "center") and not _has_block_child(node):
            found.append(node)
    return found


def _has_block_child(node: LexborNode) -> bool:
    for child in node.iter():
        if child.tag in _BLOCKS or child.tag == "br" and _double_br(child):
            return True
        if child.tag not in _BLOCKS and _has_block_child(child):
            return True
    return False


def _double_br(br: LexborNode) -> bool:
    nxt = br.next
    while nxt is not None and nxt.is_text_node and not nxt.text_content.strip():
        nxt = nxt.next
    return nxt is not None and nxt.tag == "br"


class _Candidates:
    """Containers scored by the paragraphs inside them, discounted by their link density when first read.

    Keyed by mem_id: LexborNode's == compares serialised HTML, far too slow for a dict key.
    """

    def __init__(self, weigh_classes: bool) -> None:
        self.weigh_classes = weigh_classes
        self.raw: dict[int, float] = {}
        self.nodes: dict[int, LexborNode] = {}
        self.final: dict[int, float] = {}

    def add(self, node: LexborNode, score: float) -> None:
        key = node.mem_id
        if key not in self.raw:
            self.nodes[key] = node
            self.raw[key] = _TAG_SCORE.get(node.tag, 0) + (_class_weight(node) if self.weigh_classes else 0)
        self.raw[key] += score

    def score(self, node: LexborNode) -> float | None:
        key = node.mem_id
        if key not in self.raw:
            return None
        if key not in self.final:
            self.final[key] = self.raw[key] * (1 - _link_density(node))
        return self.final[key]

    def best(self, n: int) -> list[LexborNode]:
        """The n best by discounted score. Discounting only lowers a score, so once a raw score cannot beat the
        n-th best discounted one, no later candidate can: most candidates never pay for their link density."""
        ranked: list[tuple[float, int]] = []
        for key in sorted(self.raw, key=self.raw.__getitem__, reverse=True):
            if len(ranked) == n and self.raw[key] <= ranked[-1][0]:
                break
            ranked.append((self.score(self.nodes[key]), key))
            ranked.sort(reverse=True)
            del ranked[n:]
        return [self.nodes[key] for _, key in ranked]


def _best_container(body: LexborNode, mode: _Pass) -> LexborNode:
    candidates = _Candidates(mode.weigh_classes)
    for para in _paragraphs(body):
        text = _squash(para.text())
        if len(text) < _MIN_PARAGRAPH:
            continue
        score = 1 + len(_COMMAS.findall(text)) + min(len(text) // 100, 3)
        ancestor = para.parent
        for level in range(_ANCESTOR_LEVELS):
            if ancestor is None or ancestor.tag in ("html", "#document"):
                break
            candidates.add(ancestor, score / (1 if level == 0 else 2 if level == 1 else level * 3))
            ancestor = ancestor.parent
    ranked = candidates.best(_ALTERNATIVES + 1)
    if not ranked:
        return body
    top = _shared_ancestor(ranked[0], ranked[1:], candidates)
    top = _climb(top, candidates)
    while top.parent is not None and top.parent.tag != "body" and _only_child(top):
        top = top.parent
    return _with_siblings(top, candidates, mode)


_ALTERNATIVES = 5


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
    node = node.parent
    while node is not None:
        ids.add(node.mem_id)
        node = node.parent
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


def _with_siblings(top: LexborNode, candidates: _Candidates, mode: _Pass) -> LexborNode:
    """The winner plus its siblings that score well or read as prose (an article split by an ad or a figure)."""
    parent = top.parent
    if parent is None:
        return top
    top_score = candidates.score(top) or 0
    threshold = max(10.0, top_score * 0.2)
    top_class = top.attributes.get("class")
    keep = set()
    for sibling in parent.iter():
        key = sibling.mem_id
        if key == top.mem_id:
            keep.add(key)
            continue
        bonus = top_score * 0.2 if top_class and sibling.attributes.get("class") == top_class else 0
        score = candidates.score(sibling)
        if score is not None and score + bonus >= threshold:
            keep.add(key)
        elif sibling.tag == "p":
            text = _squash(sibling.text())
            density = _link_density(sibling, len(text))
            if len(text) > 80 and density < 0.25 or 0 < len(text) <= 80 and density == 0 and _SENTENCE_END.search(text):
                keep.add(key)
    if len(keep) == 1:
        return top
    for sibling in list(parent.iter()):
        if sibling.mem_id not in keep:
            sibling.decompose()
    return parent


def _prune(article: LexborNode, mode: _Pass) -> None:
    """Drop the boilerplate that sits inside the article: link lists, share bars, forms, image galleries."""
    for node in article.css("h1, h2, h3"):
        if mode.weigh_classes and _class_weight(node) < 0 or _link_density(node) > 0.33:
            node.decompose()
    for node in reversed(article.css("form, fieldset, table, ul, ol, div, section, aside, header")):
        if node.parent is None or node.mem_id == article.mem_id:
            continue
        if _looks_like_boilerplate(node, mode):
            node.decompose()


def _looks_like_boilerplate(node: LexborNode, mode: _Pass) -> bool:
    weight = _class_weight(node) if mode.weigh_classes else 0
    if weight < 0 and mode.weigh_classes:
        return True
    text = _squash(node.text())
    if len(_COMMAS.findall(text)) >= 10:
        return False
    tag = node.tag
    if tag == "table" and _is_data_table(node):
        return False
    paragraphs = len(node.css("p"))
    images = len(node.css("img"))
    items = len(node.css("li")) - 100
    inputs = len(node.css("input"))
    embeds = len(node.css("video, audio, embed, object, iframe"))
    density = _link_density(node, len(text))
    is_list = tag in ("ul", "ol")
    if images > 1 and paragraphs / images < 0.5:
        return True
    if not is_list and items > paragraphs:
        return True
    if inputs > paragraphs // 3:
        return True
    if not is_list and len(text) < _MIN_PARAGRAPH and (images == 0 or images > 2):
        return True
    if weight < 25 and density > 0.2:
        return True
    if weight >= 25 and density > 0.5:
        return True
    if embeds == 1 and len(text) < 75 or embeds > 1:
        return True
    return False


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


def render(root: LexborNode) -> str:
    """Text of a subtree: blank line between blocks, newline for <br>, whitespace collapsed except in <pre>."""
    parts: list[str] = []
    _render(root, parts, pre=False)
    text = "".join(parts)
    lines = (line.strip() for line in text.split("\n"))
    out, blank = [], False
    for line in lines:
        if line == "\x00":  # a paragraph break
            blank = bool(out)
            continue
        if not line:
            continue
        if blank:
            out.append("")
            blank = False
        out.append(line)
    return "\n".join(out)


_BREAK = "\n\x00\n"


def _render(node: LexborNode, parts: list[str], pre: bool) -> None:
    for child in node.iter(include_text=True):
        if child.is_text_node:
            value = child.text_content or ""
            parts.append(value if pre else _WHITESPACE.sub(" ", value))
            continue
        tag = child.tag
        if tag == "br":
            parts.append("\n")
        elif tag in _BLOCKS:
            parts.append(_BREAK)
            _render(child, parts, pre or tag == "pre")
            parts.append(_BREAK)
        elif tag in ("img", "#comment"):
            continue
        else:
            _render(child, parts, pre)


_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
