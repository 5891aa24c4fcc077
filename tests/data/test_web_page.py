"""The texts a crawled music file gets from the page that links to it (clamp.data.sources.web_page)."""

from __future__ import annotations

import pytest

from clamp.data.sources.web_page import LinkContext, extract_link_contexts, is_boilerplate_anchor

TUNE_PAGE = """<html><head><title>Tune 0, a jig</title><script>var x = "<p>not text</p>";</script></head><body>
<nav><a href="/">Home</a> <p>Menu of the whole site, not about this tune.</p></nav>
<h1>Tune 0</h1>
<p>A jig in D major collected in 1800.</p>
<ul><li><a href="t0.abc">ABC</a></li><li><a href="t0.mid">Download MIDI</a></li></ul>
<h2>Another</h2>
<p>Download the <a href="t1.xml">Kesh jig</a> as MusicXML, a lively tune from Sligo.</p>
<table><tr><td><a href="t2.abc">The Butterfly</a></td><td>slip jig</td></tr></table>
<footer><a href="t3.abc">abc</a> Copyright notice and contact details of the site.</footer>
</body></html>"""


@pytest.mark.parametrize(
    ("text", "boilerplate"),
    [
        ("ABC", True),
        ("Download MIDI", True),
        ("click here", True),
        ("(pdf)", True),
        ("", True),
        ("The Kesh", False),
        ("Tune 12", False),
        ("Sheet music", True),
        ("Drowsy Maggie (reel)", False),
    ],
)
def test_boilerplate_anchors(text, boilerplate):
    assert is_boilerplate_anchor(text) is boilerplate


def test_each_link_gets_the_title_heading_and_the_prose_next_to_it():
    links = {c.url: c for c in extract_link_contexts(TUNE_PAGE, "http://h/p/")}
    abc = links["http://h/p/t0.abc"]
    assert abc == LinkContext(
        "http://h/p/t0.abc", "ABC", "Tune 0, a jig", "Tune 0", "A jig in D major collected in 1800."
    )
    # the anchor is boilerplate: the record's texts are the page's, in kind order
    assert abc.texts() == [
        ("title", "Tune 0, a jig"),
        ("heading", "Tune 0"),
        ("description", "A jig in D major collected in 1800."),
    ]
    assert links["http://h/p/t0.mid"].description == "A jig in D major collected in 1800."
    kesh = links["http://h/p/t1.xml"]  # the paragraph holding the link, without the link's own text
    assert (kesh.anchor, kesh.heading) == ("Kesh jig", "Another")
    assert kesh.description == "Download the as MusicXML, a lively tune from Sligo."
    butterfly = links["http://h/p/t2.abc"]  # a cell of two words is not prose; no paragraph under "Another"
    assert (butterfly.anchor, butterfly.description) == ("The Butterfly", "")
    home = links["http://h/"]  # navigation and footers are chrome: no heading or prose of theirs
    assert (home.anchor, home.heading, home.description) == ("Home", "", "")
    footer = links["http://h/p/t3.abc"]
    assert (footer.heading, footer.description) == ("", "")
    assert "not text" not in repr(list(links.values()))


def test_a_heading_that_repeats_the_title_is_said_once_and_contexts_round_trip():
    ctx = LinkContext("http://h/x.abc", anchor="The Kesh", title="The Kesh", heading="the kesh", description="")
    assert ctx.texts() == [("anchor", "The Kesh")]
    assert LinkContext.decode(ctx.url, ctx.encode()) == ctx
    # the crawl state of an older version stored the anchor text alone
    assert LinkContext.decode("http://h/y.abc", "Tune Y") == LinkContext("http://h/y.abc", anchor="Tune Y")
    assert LinkContext.decode("http://h/z.abc", "{not json") == LinkContext("http://h/z.abc", anchor="{not json")
