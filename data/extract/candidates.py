"""Scoring the containers of a page by the paragraphs they hold, and the rules that read those scores to pick the
article (a shared ancestor of strong sections, a climb to an ancestor that outscores the winner). Nothing here
changes the tree: data/extract/html.py finds the paragraphs, adds them, and cuts the page to what was picked.
"""

from __future__ import annotations

from typing import Protocol

from selectolax.lexbor import LexborNode

from data.extract.html_settings import ExtractionSettings


class Page(Protocol):
    """What scoring reads of one extraction pass: its settings, and two measures that change neither the page nor
    the pass's record."""

    settings: ExtractionSettings

    def weight(self, node: LexborNode) -> int: ...

    def link_density(self, node: LexborNode, text_chars: int) -> float: ...


class Candidates:
    """Containers scored by the paragraphs inside them, discounted by their link density when first read."""

    def __init__(self, page: Page) -> None:
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
            self.final[key] = self.raw[key] * (1 - self.page.link_density(node, len(measured_text(node))))
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


def shared_ancestor(
    top: LexborNode, others: list[LexborNode], candidates: Candidates, settings: ExtractionSettings
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


def climb(top: LexborNode, candidates: Candidates, settings: ExtractionSettings) -> LexborNode:
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


def measured_text(node: LexborNode) -> str:
    """Text for measuring, not for output: each text node stripped (markup indentation is not text) and joined
    with nothing, in C. Words at tag boundaries run together, which costs a character, not a word count."""
    return node.text(strip=True)
