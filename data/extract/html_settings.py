"""Every threshold and pattern of HTML extraction (data/extract/html.py), one frozen dataclass; `DEFAULTS` is what
extract_html() uses unless given other settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

# Patterns are kept as their source text, compiled once each: the class/id caches in html.py key on the source, whose
# hash Python caches, where hashing a compiled pattern hashes its whole program at every lookup.
regex = lru_cache(maxsize=64)(re.compile)


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
                regex(getattr(self, name))
            except re.error as exc:
                raise ValueError(
                    f"ExtractionSettings.{name}={getattr(self, name)!r} is not a regular expression ({exc}); "
                    f"give one Python's re module compiles, e.g. the default {getattr(DEFAULTS, name)!r}"
                ) from exc


DEFAULTS = ExtractionSettings()
