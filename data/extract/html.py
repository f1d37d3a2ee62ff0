"""Main text of an HTML page: drop what is never content, score containers by the paragraphs they hold, keep the
best one with its related siblings, prune the boilerplate left inside it, and render it with paragraph breaks
(data/extract/render.py).

Readability-style: every rule is generic (tags, roles, class/id words, text and link density); no site has a rule.
Every threshold is a field of `ExtractionSettings`, below. Speed matters as much as quality (a crawl extracts every
page), hence the caches and the skipped retries below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from selectolax.lexbor import LexborHTMLParser, LexborNode

from data.extract.charset import utf8_html
from data.extract.render import BLOCKS, render

# What hides an element is the browser's rule, not a threshold to tune. The selector only narrows the candidates
# that _is_hidden() reads.
_MAYBE_HIDDEN = '[hidden], [aria-hidden="true"], [style*="none" i], [style*="hidden" i]'
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Patterns are kept as their source text, compiled once each: the class/id caches below key on the source, whose
# hash Python caches, where hashing a compiled pattern hashes its whole program at every lookup.
_regex = lru_cache(maxsize=64)(re.compile)


@dataclass(frozen=True)
class ExtractionSettings:
    """Every threshold and pattern that tunes extraction; `DEFAULTS` holds the values the dev-set F1 was measured
    with (tests/data/test_extract_html.py).

    A variant is `dataclasses.replace(DEFAULTS, min_paragraph=40)`; a misspelled name is a TypeError. Patterns are
    regex sources, selectors CSS; class and id values are lowercased before any pattern reads them.
    """

    retry_chars: int = 500
    """A pass returning fewer characters was too eager: extract again with the next, gentler pass."""

    # -- dropped before scoring
    never_content: str = (
        "script, style, noscript, template, svg, canvas, iframe, object, embed, button, input, select, textarea, "
        "dialog, nav, aside, footer"
    )
    """Never text a reader sees, or page furniture by its tag. Not `form`: some sites wrap the page in one. Only
    <body> is read, so <head> needs no entry. One selector, not strip_tags(), which walks the page once per tag."""
    boilerplate_roles: str = (
        "[role=navigation], [role=complementary], [role=contentinfo], [role=menu], "
        "[role=menubar], [role=search], [role=alert], [role=alertdialog], [role=dialog], [role=banner]"
    )
    """ARIA roles of page furniture, dropped like `never_content`."""
    unlikely: str = (
        r"ad-break|adbox|advert|agegate|banner|breadcrumb|combx|comment|communit|cookie|consent|disqus|extra|foot"
        r"|gdpr|header|legend|masthead|menu|modal|newsletter|outbrain|pager|paginat|popup|promo|related|remark"
        r"|replies|rss|share|shoutbox|sidebar|skyscraper|social|sponsor|subscri|supplement|taboola|toolbar|widget"
    )
    """Class/id words of boilerplate: such an element is dropped before scoring in the first pass, unless
    `maybe_content` names content too. Lowercase, no IGNORECASE: that makes these regexes 5x slower."""
    maybe_content: str = r"article|body|column|content|main|shadow|story|entry"
    """Class/id words of content, which save an element that `unlikely` names."""
    article_body: str = r"(?i)articleBody|text\b"
    """Matched at the start of itemprop: schema.org's name for an article's text, a stronger witness than any
    class name. Such an element is never dropped as unlikely."""
    keep_even_if_unlikely: frozenset[str] = frozenset(
        {"body", "html", "a", "article", "main", "table", "tbody", "tr", "td", "th"}
    )
    """Tags never dropped as unlikely, whatever their class or id."""
    layout_ancestors: frozenset[str] = frozenset({"table", "pre", "code"})
    """Inside these a stray class word is layout, not boilerplate: nothing under them is dropped as unlikely."""

    # -- class and id weights
    positive: str = r"article|body|content|entry|hentry|h-entry|main|page|pagination|post|text|blog|story"
    """Class/id words of content: they add `class_weight` to an element's weight."""
    negative: str = (
        r"-ad-|hidden|^hid$| hid$| hid |^hid |banner|combx|comment|com-|contact|foot|footer|footnote|gdpr|masthead"
        r"|media|meta|outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|tool"
        r"|widget|byline|author|dateline|cookie|newsletter|subscribe"
    )
    """Class/id words of boilerplate: they take `class_weight` off. A negative weight is pruned on sight."""
    class_weight: int = 25
    """What one class or id value naming content or boilerplate moves an element's score by."""

    # -- scoring paragraphs and their containers
    paragraphs: frozenset[str] = frozenset({"p", "pre", "td"})
    """Tags that are always one paragraph, whatever they hold."""
    containers: frozenset[str] = frozenset({"div", "section", "article", "main", "li", "blockquote", "center", "dd"})
    """Tags that are one paragraph when they hold no block, else their own loose text is one. Only blocks: a block
    inside another makes the outer one hold a block, so a run of text is scored once."""
    min_paragraph: int = 25
    """Characters a paragraph needs to score; in pruning, a container this short (not a list) is dropped unless it
    holds a figure's images (`figure_images`)."""
    commas: str = r"[,，、،;；]"
    """Commas and semicolons of several scripts: a point each, for a paragraph; `prose_commas` of them save a
    container from pruning."""
    chars_per_point: int = 100
    """A paragraph scores a point per this many characters..."""
    length_points_per_piece: int = 3
    """...at most this many times the paragraphs it holds (pieces split by a double <br>)."""
    tag_scores: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({
        "div": 5, "article": 5, "main": 5, "section": 3, "pre": 3, "td": 3, "blockquote": 3,
        "address": -3, "ol": -3, "ul": -3, "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3,
        "h1": -5, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5, "th": -5,
    }))
    """A container's score before its paragraphs, by tag (0 for a tag not here); its class weight is added."""
    ancestor_levels: int = 5
    """How far up a paragraph's score is credited: its container in full, the next ancestor half, less further up."""

    # -- choosing the article
    alternatives: int = 5
    """Runners-up read beside the winner, to find an article cut into sections."""
    section_share: float = 0.75
    """A runner-up scoring at least this share of the winner is a strong one..."""
    sections: int = 3
    """...and this many strong ones under one ancestor of the winner make that ancestor the article."""
    climb_divisor: int = 3
    """Climbing from the winner stops at an ancestor scoring under the winner's score divided by this: from there on
    it is the page, not the article."""
    sibling_min_score: float = 10.0
    """The least score a scored sibling of the winner needs to join the article..."""
    sibling_share: float = 0.2
    """...or this share of the winner's score, when that is more."""
    same_class_bonus: float = 0.2
    """A sibling with the winner's class gets this share of the winner's score added before that test."""
    sibling_long_paragraph: int = 80
    """An unscored sibling <p> longer than this joins with link density under `sibling_link_density`; a shorter one
    needs no link and a `sentence_end`."""
    sibling_link_density: float = 0.25
    """A long sibling <p> (see `sibling_long_paragraph`) with less of its text in links joins the article."""
    sentence_end: str = r"\.( |$)"
    """A sentence's end, which a short sibling <p> must hold to join."""

    # -- pruning inside the article
    headings: str = "h1, h2, h3"
    """Headings dropped when their weight is negative or their link density over `heading_link_density`."""
    heading_link_density: float = 0.33
    """A heading inside the article with more of its text in links is dropped."""
    prunable: str = "form, fieldset, table, ul, ol, div, section, aside, header"
    """Containers judged as boilerplate, innermost first, so each is judged on what is left inside it."""
    prose_commas: int = 10
    """A container with this many `commas` is prose: kept whatever else it holds."""
    paragraphs_per_image: float = 0.5
    """A container with two images or more and fewer paragraphs per image than this is a gallery: dropped."""
    extra_list_items: int = 100
    """A container (not a list) with more list items than its paragraphs plus this is a menu: dropped."""
    paragraphs_per_input: int = 3
    """A container with more inputs than its paragraphs divided (floor) by this is a form: dropped."""
    figure_images: int = 2
    """A container shorter than `min_paragraph` (not a list) is kept only with 1 to this many images: a figure."""
    embed_min_chars: int = 75
    """A container with one embed (video, audio, embed, object, iframe) and fewer characters is dropped; one with
    two or more always."""
    max_link_density: float = 0.2
    """A container with more of its text in links is dropped..."""
    vouched_link_density: float = 0.5
    """...or with more than this, when its class weight is `class_weight` or more (a content word vouches for it)."""
    data_table_rows: int = 10
    """A table with no caption, header, summary or nested table is data, which pruning keeps, with this many rows
    or more..."""
    data_table_columns: int = 4
    """...or more cells than this in a row..."""
    data_table_cells: int = 10
    """...or more cells than this in all (rows times its widest row)."""

    def __post_init__(self) -> None:
        for name in ("unlikely", "maybe_content", "article_body", "positive", "negative", "commas", "sentence_end"):
            try:
                _regex(getattr(self, name))
            except re.error as exc:
                raise ValueError(
                    f"ExtractionSettings.{name}={getattr(self, name)!r} is not a regular expression ({exc}); "
                    f"give one Python's re module compiles, e.g. the default {getattr(DEFAULTS, name)!r}"
                ) from exc


DEFAULTS = ExtractionSettings()


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
        self._link_chars: dict[int, int] = {}  # by mem_id; LexborNode's == compares serialised HTML, too slow

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
                cache[key] = len(_text(link))
            linked += cache[key]
        return min(1.0, linked / text_chars)

    # -- choosing the article ---------------------------------------------------------------------------------

    def _best_container(self) -> tuple[LexborNode, bool]:
        """The article, and whether a class weight that was not 0 went into a score."""
        settings = self.settings
        candidates = _Candidates(self)
        commas = _regex(settings.commas)
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
        top = _shared_ancestor(ranked[0], ranked[1:], candidates, settings)
        top = _climb(top, candidates, settings)
        while top.parent is not None and top.parent.tag != "body" and _only_child(top):
            top = top.parent
        return self._with_siblings(top, candidates), candidates.weighed

    def _with_siblings(self, top: LexborNode, candidates: _Candidates) -> LexborNode:
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
                text = _text(sibling)
                chars = len(text)
                density = self.link_density(sibling, chars)
                if (
                    chars > long_paragraph and density < settings.sibling_link_density
                    or 0 < chars <= long_paragraph and density == 0 and _regex(settings.sentence_end).search(text)
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
            if weight < 0 or self.link_density(node, len(_text(node))) > settings.heading_link_density:
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
        text = _text(node)
        if len(_regex(settings.commas).findall(text)) >= settings.prose_commas:
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


class _Candidates:
    """Containers scored by the paragraphs inside them, discounted by their link density when first read."""

    def __init__(self, page: _Extraction) -> None:
        self.page = page
        self.raw: dict[int, float] = {}
        self.nodes: dict[int, LexborNode] = {}
        self.final: dict[int, float] = {}
        self.weighed = False  # a class weight that was not 0 went into a raw score
        # The container and its ancestors up to ancestor_levels, by mem_id: siblings share them, and walking
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
            settings = self.page.settings
            keys: list[int] = []
            current: LexborNode | None = node
            while current is not None and current.tag != "html" and len(keys) < settings.ancestor_levels:
                key = current.mem_id
                if key not in self.raw:
                    self.nodes[key] = current
                    weight = self.page.weight(current)
                    self.weighed = self.weighed or weight != 0
                    # a node without a tag name (None) scores like any tag missing from the table
                    self.raw[key] = settings.tag_scores.get(current.tag or "", 0) + weight
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


def _paragraphs(body: LexborNode, settings: ExtractionSettings):
    """(node, text, pieces) for each run of text that reads as a paragraph.

    pieces > 0: the node is the paragraph; it holds that many paragraphs split by double <br>.
    pieces < 0: the text is loose text directly inside a container that also holds blocks; it counts as one
    paragraph whose parent is the container itself.
    """
    for node in body.traverse():
        tag = node.tag
        if tag in settings.paragraphs:
            yield node, _text(node), 1
        elif tag in settings.containers:
            breaks = _inline_only(node)
            if breaks >= 0:
                yield node, _text(node), breaks + 1
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


def _shared_ancestor(
    top: LexborNode, others: list[LexborNode], candidates: _Candidates, settings: ExtractionSettings
) -> LexborNode:
    """An article cut into sections scores each section alone; when enough strong runners-up sit under one
    ancestor of the winner, that ancestor is the article."""
    top_score = candidates.score(top) or 0
    strong = [node for node in others if (candidates.score(node) or 0) >= top_score * settings.section_share]
    if len(strong) < settings.sections:
        return top
    lineages = [_ancestor_ids(node) for node in strong]
    ancestor = top.parent
    while ancestor is not None and ancestor.tag != "body":
        if sum(ancestor.mem_id in lineage for lineage in lineages) >= settings.sections:
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


def _climb(top: LexborNode, candidates: _Candidates, settings: ExtractionSettings) -> LexborNode:
    """Adopt an ancestor that outscores the chain below it: it holds more of the article than the winner.
    Stop at one scoring under a third (climb_divisor) of the winner: from there on it is the page, not the article."""
    last = candidates.score(top) or 0
    floor = last / settings.climb_divisor
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


def _is_unlikely(node: LexborNode, settings: ExtractionSettings) -> bool:
    if node.tag in settings.keep_even_if_unlikely:
        return False
    attrs = node.attributes
    words = settings.unlikely, settings.maybe_content
    verdicts = [_hint_verdict(value, *words) for value in (attrs.get("class"), attrs.get("id")) if value]
    if not any(unlikely for unlikely, _ in verdicts) or any(content for _, content in verdicts):
        return False
    if _regex(settings.article_body).match(attrs.get("itemprop") or ""):
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
    return bool(_regex(unlikely).search(value)), bool(_regex(content).search(value))


@lru_cache(maxsize=8192)
def _hint_weight(value: str, negative: str, positive: str, weight: int) -> int:
    value = value.lower()
    return (-weight if _regex(negative).search(value) else 0) + (weight if _regex(positive).search(value) else 0)


def _text(node: LexborNode) -> str:
    """Text for measuring, not for output: each text node stripped (markup indentation is not text) and joined
    with nothing, in C. Words at tag boundaries run together, which costs a character, not a word count."""
    return node.text(strip=True)


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
