"""The links of an HTML page, each with the text around it that describes what it points to.

CLaMP learned from the words people write about a tune, and a music file's link text is
mostly "ABC" or "download". So each link keeps four texts (`LinkContext`):

- `anchor`: the link's own text, unless it is boilerplate (`is_boilerplate_anchor`);
- `title`: the page's `<title>`;
- `heading`: the nearest heading (`<h1>`..`<h6>`) above the link;
- `description`: the prose next to the link: the text of the block that holds it (a `<p>`,
  `<li>`, `<td>`, `<dd>`, ...) without the link texts, when that is a sentence, else the last
  paragraph under the same heading.

Script, style and navigation chrome (`<nav>`, `<footer>`) never count as text.
The crawler stores the context with each queued URL (`LinkContext.encode`); records get the
texts in the order above and their kinds in `metadata["text_kinds"]`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

TEXT_KINDS = ("anchor", "title", "heading", "description")

# Link texts that name a format or an action, not the music (compared word by word, folded).
_BOILERPLATE = (
    "abc midi mid musicxml xml mxl krn kern humdrum pdf ps png file files download downloads here click link "
    "this score sheet music notation format version get view open save the a an as in"
)
_BOILERPLATE_WORDS = frozenset(_BOILERPLATE.split())
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset({"p", "li", "td", "th", "dd", "dt", "blockquote", "figcaption", "caption"})
_SKIPPED = frozenset({"script", "style", "noscript", "template", "nav", "footer"})
_MIN_DESCRIPTION_WORDS = 3
_MAX_TEXT_CHARS = 500


def _collapse(text: str) -> str:
    return " ".join(text.split())


def is_boilerplate_anchor(text: str) -> bool:
    """True for link texts such as "ABC", "Download MIDI", "click here" or "(pdf)"."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return not words or all(w in _BOILERPLATE_WORDS for w in words)


@dataclass(frozen=True)
class LinkContext:
    """One link of a page and the texts that describe its target (empty string: none)."""

    url: str
    anchor: str = ""
    title: str = ""
    heading: str = ""
    description: str = ""

    def texts(self) -> list[tuple[str, str]]:
        """(kind, text) in `TEXT_KINDS` order: a non-boilerplate anchor, then title, heading and
        description, each once (a heading that repeats the title is dropped)."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for kind in TEXT_KINDS:
            text = getattr(self, kind)
            if not text or (kind == "anchor" and is_boilerplate_anchor(text)):
                continue
            key = text.casefold()
            if key not in seen:
                seen.add(key)
                out.append((kind, text))
        return out

    def encode(self) -> str:
        """The context as the crawl state stores it with a queued URL (JSON without the URL)."""
        data = {k: v for k, v in asdict(self).items() if k != "url" and v}
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def decode(cls, url: str, stored: str) -> LinkContext:
        """The inverse of `encode`; a plain string (a crawl state written before contexts) is
        the anchor text."""
        if stored.startswith("{"):
            try:
                data = json.loads(stored)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return cls(url, **{k: str(v) for k, v in data.items() if k in TEXT_KINDS})
        return cls(url, anchor=stored)


class _PageParser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.links: list[dict[str, str]] = []
        self.title = ""
        self._title: list[str] | None = None
        self._heading: list[str] | None = None
        self._current_heading = ""
        self._last_paragraph = ""
        self._skip_depth = 0
        # open blocks, innermost last: [tag, text parts, anchor texts, the links inside it]
        self._blocks: list[tuple[str, list[str], list[str], list[dict[str, str]]]] = []
        self._anchor: dict[str, str] | None = None
        self._anchor_text: list[str] = []

    # --- tags
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k.lower(): v for k, v in attrs}
        if tag in _SKIPPED:
            self._skip_depth += 1
        elif tag == "base" and attr.get("href"):
            self.base_url = urljoin(self.base_url, attr["href"] or "")
        elif tag == "title":
            self._title = []
        elif tag in _HEADINGS:
            self._close_anchor()
            self._heading = []
        elif tag in _BLOCKS:
            self._blocks.append((tag, [], [], []))
        elif tag == "a":
            self._close_anchor()
            href = attr.get("href")
            if href:
                self._anchor = {
                    "url": urljoin(self.base_url, href.strip()),
                    "heading": self._current_heading,
                    "paragraph": self._last_paragraph,
                    "skipped": "1" if self._skip_depth else "",
                }
                self._anchor_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title" and self._title is not None:
            self.title = _collapse("".join(self._title))[:_MAX_TEXT_CHARS]
            self._title = None
        elif tag in _HEADINGS and self._heading is not None:
            self._close_anchor()
            self._current_heading = _collapse("".join(self._heading))[:_MAX_TEXT_CHARS]
            self._last_paragraph = ""  # a new section: the prose above belongs to another
            self._heading = None
        elif tag in _BLOCKS:
            self._close_anchor()
            self._close_block(tag)
        elif tag == "a":
            self._close_anchor()

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
            return
        if self._anchor is not None:
            self._anchor_text.append(data)
        if self._skip_depth:
            return
        if self._heading is not None:
            self._heading.append(data)
        if self._blocks:
            self._blocks[-1][1].append(data)

    def close(self) -> None:
        super().close()
        self._close_anchor()
        while self._blocks:
            self._close_block(self._blocks[-1][0])

    # --- bookkeeping
    def _close_anchor(self) -> None:
        if self._anchor is None:
            return
        link = {**self._anchor, "anchor": _collapse("".join(self._anchor_text))[:_MAX_TEXT_CHARS]}
        self._anchor = None
        self._anchor_text = []
        self.links.append(link)
        if self._blocks:
            self._blocks[-1][2].append(link["anchor"])
            self._blocks[-1][3].append(link)

    def _close_block(self, tag: str) -> None:
        if not any(b[0] == tag for b in self._blocks):
            return  # a stray end tag
        while self._blocks:
            open_tag, parts, anchors, links = self._blocks.pop()
            text = _collapse("".join(parts))
            prose = text
            for anchor in anchors:
                prose = prose.replace(anchor, " ", 1) if anchor else prose
            prose = _collapse(prose).strip(" :;,-|·")[:_MAX_TEXT_CHARS]
            sentence = len(re.findall(r"[^\W\d_]{2,}", prose)) >= _MIN_DESCRIPTION_WORDS
            for link in links:
                link["block"] = prose if sentence else ""
            if self._blocks:  # the outer block holds this one's text and links too
                self._blocks[-1][1].append(" " + text + " ")
                self._blocks[-1][2].extend(anchors)
                self._blocks[-1][3].extend(links)
            if open_tag == "p" and sentence and not links:
                self._last_paragraph = prose
            if open_tag == tag:
                return


def extract_link_contexts(html: str, base_url: str) -> list[LinkContext]:
    """Every `<a href>` of a page in document order, with its texts (not filtered or normalized)."""
    parser = _PageParser(base_url)
    parser.feed(html)
    parser.close()
    out = []
    for link in parser.links:
        chrome = bool(link.get("skipped"))  # a link in the page's navigation: no prose of its own
        description = "" if chrome else (link.get("block") or link.get("paragraph", ""))
        out.append(
            LinkContext(
                url=link["url"],
                anchor=link["anchor"],
                title=parser.title,
                heading="" if chrome else link.get("heading", ""),
                description=description,
            )
        )
    return out


# --- sitemaps (https://www.sitemaps.org/protocol.html) -------------------------------------------

_SITEMAP_ROOT = re.compile(rb"<(?:\w+:)?(urlset|sitemapindex)\b")
_LOC = re.compile(r"<(?:\w+:)?loc>\s*([^<\s]+)\s*</(?:\w+:)?loc>")


def sitemap_kind(body: bytes) -> str | None:
    """ "urlset" or "sitemapindex" when `body` is a sitemap (its root element within the first
    2 KB), else None: a `.xml` URL is a MusicXML score unless it says otherwise."""
    match = _SITEMAP_ROOT.search(body[:2048])
    return match.group(1).decode() if match else None


def sitemap_urls(body: bytes) -> list[str]:
    """The `<loc>` URLs of a sitemap or sitemap index, in document order (entities decoded)."""
    import html

    text = body.decode("utf-8", errors="replace")
    return [html.unescape(m.group(1)) for m in _LOC.finditer(text)]
