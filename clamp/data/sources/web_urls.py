"""URLs and HTML for the crawler: normalisation, hosts, formats by suffix or Content-Type,
record ids, Retry-After, and the links of a page."""

from __future__ import annotations

import email.utils
import hashlib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import quote, urldefrag, urljoin, urlsplit, urlunsplit

from clamp.data.records import FORMAT_BY_SUFFIX

# Content types that identify a music file when the URL has no telling suffix.
FORMAT_BY_CONTENT_TYPE = {
    "audio/midi": "midi",
    "audio/x-midi": "midi",
    "audio/mid": "midi",
    "text/vnd.abc": "abc",
    "application/vnd.recordare.musicxml+xml": "musicxml",
    "application/vnd.recordare.musicxml": "mxl",
}
DEFAULT_PORTS = {"http": 80, "https": 443}


# --------------------------------------------------------------------------------------------- URLs


# Characters left as they are when quoting a path / query (existing %-escapes are kept).
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


def normalize_url(url: str) -> str | None:
    """Absolute http(s) URL without fragment, lower-case scheme and host, no default port; else None."""
    url, _ = urldefrag(url.strip())
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """The host:port key of a normalized URL (default ports omitted)."""
    return urlsplit(url).netloc


def normalize_host(host: str) -> str:
    host = host.strip().lower()
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[: -len(default)]
    return host


def url_suffix(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).suffix.lower()


def detect_format(url: str, content_type: str) -> str | None:
    """Music format by URL path suffix, else by Content-Type; None when it is not a music file."""
    fmt = FORMAT_BY_SUFFIX.get(url_suffix(url))
    if fmt is not None:
        return fmt
    return FORMAT_BY_CONTENT_TYPE.get(mime_of(content_type))


def record_id(url: str) -> str:
    return "web:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def mime_of(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def charset_of(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return "utf-8"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --------------------------------------------------------------------------------------------- HTML


class _LinkParser(HTMLParser):
    """Collects (href, link text) of every ``<a href>``, honouring ``<base href>``."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k.lower(): v for k, v in attrs}
        if tag == "base" and attr.get("href"):
            self.base_url = urljoin(self.base_url, attr["href"] or "")
        elif tag == "a":
            self._close_anchor()
            href = attr.get("href")
            if href:
                self._href = urljoin(self.base_url, href.strip())
                self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close_anchor()

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._close_anchor()

    def _close_anchor(self) -> None:
        if self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None
            self._text = []


def extract_links(html: str, base_url: str) -> list[tuple[str, str]]:
    """(absolute URL, link text) for each anchor, in document order; not filtered or normalized."""
    parser = _LinkParser(base_url)
    parser.feed(html)
    parser.close()
    return parser.links
