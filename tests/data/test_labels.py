"""Labels of one tune (clamp.text.labels) on snippets of the real music21 corpus, expected values by hand."""

from __future__ import annotations

import pytest

from clamp.text.attribution import collection_label, composer_label, composer_period
from clamp.text.labels import key_label, labels_of, meter_label, tempo_label, tune_type
from clamp.text.music_facts import n_bars, pitch_range, voices

# ryansMammoth/AlhambraReel.abc, tune 1 (as in the corpus)
RYAN_REEL = """X:1
T:The Alhambra -- Reel
R:reel
N:165
B:Ryan's Mammoth Collection
Z:Contributed by Ray Davies,  ray:davies99.freeserve.co.uk
M:C|
L:1/8
K:D
vdceA ((3Bcd) AF | DFAF GEEc | dcdA ((3Bcd) AF | dfeg fdd2 |
 dceA ((3Bcd) AF | DFAF GEEc | dcdA ((3Bcd) AF | dfeg fdd2 |]
dfaf bgaf | dfaf geef | dfaf bgaf | gfeg fdd2 |
dfaf bgaf | dfaf geeg | fdec ((3Bcd) AF | DFAd fdd2 | |]
"""
RYAN_ID = "music21:ryansMammoth/AlhambraReel.abc#1"

# essenFolksong/ballad20.abc, tune 118
ESSEN_SONG = """X:118
T: Das Bauerntoechterlein
N: Q1051J
O: Mitteleuropa, Deutschland (BRD) , Hessen, Odenwald
N: Melodievergleich zu Q0051H, anderes Lied. Verzierung (Vorschlag) in
N: der letzten Zeile
R: Liebes - Lied
M: 3/4
L: 1/16
K: G
D4 | G2GFE4E2FG | A2AFD2
D2G2A2 | B4B4A4 | G4z4
"""
ESSEN_ID = "music21:essenFolksong/ballad20.abc#118"

# airdsAirs/book3.abc, tune 25 (first two lines of music)
AIRD_AIR = """X:0425
T:As I came o'er the Cairney Mount.
N:initial rest in second part added to make things add up
M:C|
L:1/8
Q:1/4=90 "Slow"
I: :: ::
Z:Jack Campin * www.campin.me.uk * 2009
K:D
A|F2ED (FGA)F|BAGF  E3 B|A2D2 (FG)  A2 |(B>cd).A F2A2 |
  D2d>e d3 g |e2E2 TE3 D|F2A2  B>(dTcB)| A2D>E   F2A :|
"""

# the header xml2abc writes for bach/bwv10.7.mxl, and the first bars of two voices
BACH_CHORALE = """X:1
T:bwv10.7.mxl
T:PDF \u00a9 2004 Margaret Greentree - used by permission
T:BWV 10.7
C:J.S. Bach
%%score [ 1 | 2 | 3 | 4 ]
L:1/4
M:4/4
K:Gmin
V:1 treble nm="Soprano" snm="S."
V:2 treble nm="Alto" snm="A."
V:3 bass nm="Tenor" snm="T."
V:4 bass nm="Bass" snm="B."
V:1
 d2 f2 | d d d d | e2 d2 | c2 c2 | !fermata!B4 | %5
w: Mei- ne|Seel\u2019 er- hebt den|Her- ren;|und mein|Geist|
V:2
 G2 F2 | F ^F G A | G F2 G | G2 F2 | !fermata!F4 | %5
V:3
 B,2 C2 | D C B, A, | B, C2 B, | B,2 A,2 | !fermata!D4 | %5
V:4
 G,2 A,2 | B, A, G, ^F, | G, A, B, G, | E, C, F,2 | !fermata!B,,4 | %5
"""
BACH_ID = "music21:bach/bwv10.7.mxl"


# ----------------------------------------------------------------------------------------- tune types


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("reel", "reel"),
        ("Reel", "reel"),
        ("REEL", "reel"),
        (" reel", "reel"),
        ("jig", "jig"),
        ("JIG", "jig"),
        ("double jig", "jig"),
        ("single jig", "jig"),
        ("slipjig", "slip jig"),
        ("slip jig", "slip jig"),
        ("Slip Jig", "slip jig"),
        ("hornpipe", "hornpipe"),
        ("Hornpipe", "hornpipe"),
        ("strathspey", "strathspey"),
        ("waltz", "waltz"),
        ("march", "march"),
        ("Slide", "slide"),
        ("polka", "polka"),
        ("mazurka", "mazurka"),
        ("schottische", "schottische"),
        ("air", "air"),
        ("set dance", "set dance"),
        ("barn dance", "barn dance"),
        ("highland fling", "fling"),
        ("fling", "fling"),
        ("minuet", "minuet"),
        ("quickstep", "quickstep"),
        ("clog", "clog"),
        ("walkaround", "walkaround"),
        ("Gavotte", "gavotte"),
        ("??, Walzer]", "waltz"),
    ],
)
def test_tune_type_variants(raw, expected):
    assert tune_type(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Liebes - Lied",
        "Romanze, Ballade, Lied",
        "Romanze, Ballade, Lied, religioeses Lied",
        "geistliches, religiöses Lied]",
        "Liebeslieder]",
        "Xiaodiao]",
        "Shange]",
        "Shange. Nannü qing]",
        "Haozi, Chuanjiang chuanfu haozi]",
        "Staende -, Soldaten -, Kriegs - Lied",
        "Liebe, Tod]",
        "???, Liebe]",
        "geistlich",
        "Vaterland und Wehr",
    ],
)
def test_song_genres_are_songs(raw):
    assert tune_type(raw) == "song"


@pytest.mark.parametrize("raw", ["???", "???]", "??]", "yyy]", "NN", "", "Kunstmusik", "Nuclear Melody", None])
def test_junk_and_unknown_tune_types(raw):
    assert tune_type(raw) is None


# ----------------------------------------------------------------------------------------- key, meter, tempo


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        ("D", "D major"),
        (" G", "G major"),
        ("Bb", "B flat major"),
        ("Eb", "E flat major"),
        ("F#", "F sharp major"),
        ("Am", "A minor"),
        ("Amin", "A minor"),
        ("A Minor", "A minor"),
        ("E Minor", "E minor"),
        ("A min -8va", "A minor"),
        ("F#m", "F sharp minor"),
        ("Gmin", "G minor"),
        ("EM", "E minor"),  # ABC modes are case-insensitive
        ("Dmix", "D mixolydian"),
        ("A Mixolydian", "A mixolydian"),
        ("Ador", "A dorian"),
        ("G dor", "G dorian"),
        ("E phr -8va", "E phrygian"),
        ("Glyd", "G lydian"),
        ("D Major", "D major"),
        ("F -8va", "F major"),
        ("G % Aird has two sharps, this must be a typo", "G major"),
        ("none", None),
        ("Hp", None),
        ("HP", None),
        ("Bn", None),
        ("", None),
    ],
)
def test_key_label(k, expected):
    assert key_label(f"X:1\nT:t\nM:4/4\nK:{k}\nabc|\n") == expected


def test_key_label_reads_the_last_header_key_not_inline_changes():
    assert key_label("X:1\nK:G\nK:D\nabc|[K:Am] abc|\nK:C\nabc|\n") == "D major"
    assert key_label(RYAN_REEL) == "D major"
    assert key_label(ESSEN_SONG) == "G major"
    assert key_label(BACH_CHORALE) == "G minor"
    assert key_label("X:1\nT:tune\nabc|\n") is None


def test_key_named_in_a_title_wins_over_the_key_signature():
    # humdrum -> xml2abc keeps the signature only: four sharps read as E major
    abc = 'X:1\nT:Mazurka in C-sharp Minor, Op. 6, No. 2\nM:3/4\nK:E\nV:1 treble nm="Piano"\nV:1\nc2 d2 e2|\n'
    assert key_label(abc) == "C sharp minor"


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        ("6/8", "6/8"),
        (" 3/4", "3/4"),
        ("C", "4/4"),
        ("C|", "2/2"),
        (" none", None),
        ("FREI4/4", None),
        ("9/8 % Aird bars it in 6/8", "9/8"),
        ("2/2]", "2/2"),
        ("", None),
    ],
)
def test_meter_label(m, expected):
    assert meter_label(f"X:1\nM:{m}\nL:1/8\nK:C\nabc|\n") == expected


def test_meter_of_real_tunes():
    assert meter_label(RYAN_REEL) == "2/2"
    assert meter_label(ESSEN_SONG) == "3/4"
    assert meter_label(BACH_CHORALE) == "4/4"


def test_tempo_label():
    assert tempo_label(AIRD_AIR, []) == "slow"  # Q:1/4=90 "Slow"
    assert tempo_label('X:1\nN: "Moderate"\nK:G\nabc|\n') == "moderate"
    assert tempo_label('X:1\nN:"Slow" "collected by J. O\'Neill"\nK:G\nabc|\n') == "slow"
    assert tempo_label('X:1\nN:"With spirit"\nK:G\nabc|\n') == "spirited"
    assert tempo_label('X:1\nN:"Lively"\nK:G\nabc|\n') == "lively"
    assert tempo_label('X:1\nQ:1/4=132 "Vivace"\nK:G\nabc|\n') == "vivace"
    assert tempo_label("X:1\nK:G\nabc|\n", ["Notes: Allegro moderato"]) == "allegro moderato"
    assert tempo_label("X:1\nQ:1/4=120\nK:G\nabc|\n") is None  # a number names no tempo word
    assert tempo_label(RYAN_REEL, ["Title: Slow Air"]) is None  # only notes and tempo texts count


# ----------------------------------------------------------------------------------------- the music


def test_n_bars():
    assert n_bars(RYAN_REEL) == 16  # 4 lines of 4 bars; the empty "| |]" is no bar
    assert n_bars(ESSEN_SONG) == 4  # the pick-up "D4" is not a bar; a bar may span two lines
    assert n_bars(AIRD_AIR) == 8  # pick-up "A" left out
    assert n_bars(BACH_CHORALE) == 5  # the first voice only
    assert n_bars("X:1\nK:C\n|:abc|def:|\n") == 2


def test_pitch_range():
    assert pitch_range(RYAN_REEL) == ("D4", "B5")
    assert pitch_range(ESSEN_SONG) == ("D4", "B4")
    assert pitch_range(AIRD_AIR) == ("D4", "G5")
    assert pitch_range(BACH_CHORALE) == ("B2", "F5")  # over every voice: B,, in the bass
    # chord symbols and annotations in quotes, !decorations!, lyrics and header lines are skipped
    abc = 'X:1\nT:Bbb\nK:G\n"Am"A,2 !trill!c\'2 "^Fine"B|"_E,,"G4|\nw:Aaa Bee\n'
    assert pitch_range(abc) == ("A3", "C6")
    assert pitch_range("X:1\nK:C\nz4|\n") is None


def test_voices():
    assert voices(BACH_CHORALE) == ["Soprano", "Alto", "Tenor", "Bass"]
    # xml2abc keeps the MusicXML part name's line break and indentation
    quartet = 'X:1\nK:F\nV:1 treble nm="\\n\t\t\t:Violin I" snm="\\n\t\t\t:Vln. I"\nV:2 bass\nV:1\nabc|\nV:2\nA,B,C|\n'
    assert voices(quartet) == ["Violin I", "2"]
    assert voices(RYAN_REEL) == []


# ----------------------------------------------------------------------------------------- collection, composer


@pytest.mark.parametrize(
    ("row_id", "expected"),
    [
        (RYAN_ID, "Ryan's Mammoth Collection"),
        ("music21:oneills1850/0001-0050.abc#3", "O'Neill's Music of Ireland"),
        (ESSEN_ID, "Essen Folksong Collection"),
        ("music21:airdsAirs/book3.abc#25", "Aird's Airs"),
        ("music21:nottingham-dataset/reelsa-c.abc#1", "Nottingham Music Database"),
        ("music21:miscFolk/americanfifeopus.abc#3", None),
        ("local:tune.abc", None),
    ],
)
def test_collection_from_corpus_folder(row_id, expected):
    assert collection_label(row_id, []) == expected


def test_collection_from_book_field():
    assert collection_label("local:a.abc", ["Title: x", "Book: Cole's 1000 Fiddle Tunes"]) == "Cole's 1000 Fiddle Tunes"
    assert collection_label("local:a.abc", ["Book: Coles 43.8"]) == "Cole's 1000 Fiddle Tunes"
    assert collection_label("local:a.abc", ["Book: \"O'Neill's 981\""]) == "O'Neill's Music of Ireland"
    assert collection_label("local:a.abc", ["Book: Ryans Mammoth Collection"]) == "Ryan's Mammoth Collection"
    assert collection_label("local:a.abc", ["Book: db: -c 8 -b 21"]) is None
    assert collection_label("local:a.abc", ["Book: The Session Tunebook"]) == "The Session Tunebook"


def test_composer_from_folder_metadata_and_c_field():
    assert composer_label(BACH_CHORALE, {"composer": "J.S. Bach"}, BACH_ID) == "Johann Sebastian Bach"
    assert composer_label(BACH_CHORALE, {}, "local:bwv10.7.mxl") == "Johann Sebastian Bach"  # from C:J.S. Bach
    # the folder wins over a wrong metadata composer (music21 names the poet of some madrigals)
    assert (
        composer_label("X:1\nK:F\nF|\n", {"composer": "Battista Guarini"}, "music21:monteverdi/madrigal.3.1.mxl")
        == "Claudio Monteverdi"
    )
    assert (
        composer_label("X:1\nK:C\nc|\n", {"composer": "Palestrina, Giovanni Perluigi da"}, "local:x.krn")
        == "Giovanni Pierluigi da Palestrina"
    )
    assert composer_label("X:1\nK:C\nc|\n", {"composer": "Chopin, Frederic"}, "local:x") == "Frédéric Chopin"
    assert (
        composer_label("X:1\nC: Josquin des Prez, 1545\nK:G\nG|\n", {}, "music21:josquin/missa.abc#1")
        == "Josquin des Prez"
    )
    assert composer_label("X:1\nC: FRANK LIVINGSTON.\nK:G\nG|\n", {}, RYAN_ID) == "Frank Livingston"
    assert composer_label("X:1\nC:G.L.TRACY.\nK:G\nG|\n", {}, RYAN_ID) == "G. L. Tracy"
    assert composer_label("X:1\nC:By Dibdin.\nK:G\nG|\n", {}, "music21:airdsAirs/book1.abc#1") == "Charles Dibdin"


@pytest.mark.parametrize(
    "c",
    [
        "Irish.",
        "SCOTCH.",
        "A Welch Tune",
        "West India.",
        '"collected by F.O\'Neill"',
        "(Collected from F. O'Neill)",
        "Trad",
        "N.G.",
        "Composed by a Young Lady.",
        "",
    ],
)
def test_c_fields_that_name_no_composer(c):
    assert composer_label(f"X:1\nC:{c}\nK:G\nG|\n", {}, "music21:airdsAirs/book1.abc#2") is None


def test_oneills_c_field_is_the_collector_unless_a_known_composer():
    oneill = "music21:oneills1850/0501-0550.abc#1"
    assert composer_label("X:1\nC:F. O'Neill.\nK:G\nG|\n", {}, oneill) is None
    assert composer_label("X:1\nC:Cronin.\nK:G\nG|\n", {}, oneill) is None
    assert composer_label("X:1\nC:O'Carolan\nK:G\nG|\n", {}, oneill) == "Turlough O'Carolan"


def test_composer_period():
    assert composer_period("Johann Sebastian Bach") == "Baroque"
    assert composer_period("Giovanni Pierluigi da Palestrina") == "Renaissance"
    assert composer_period("Wolfgang Amadeus Mozart") == "Classical"
    assert composer_period("Robert Schumann") == "Romantic"
    assert composer_period("Johannes Ciconia") == "Medieval"
    assert composer_period("Frederic Chopin") == "Romantic"  # matched without accents
    assert composer_period("Frank Livingston") is None
    assert composer_period(None) is None


# ----------------------------------------------------------------------------------------- all labels


def test_labels_of_real_tunes():
    assert labels_of(RYAN_REEL, [], {"collection": "ryansMammoth"}, RYAN_ID) == {
        "tune_type": "reel",
        "key": "D major",
        "mode": "major",
        "meter": "2/2",
        "collection": "Ryan's Mammoth Collection",
    }
    assert labels_of(ESSEN_SONG, [], {}, ESSEN_ID) == {
        "tune_type": "song",
        "key": "G major",
        "mode": "major",
        "meter": "3/4",
        "collection": "Essen Folksong Collection",
    }
    assert labels_of(AIRD_AIR, [], {}, "music21:airdsAirs/book3.abc#25") == {
        "key": "D major",
        "mode": "major",
        "meter": "2/2",
        "tempo": "slow",
        "collection": "Aird's Airs",
    }
    assert labels_of(BACH_CHORALE, ["Title: BWV 10.7", "Composer: J.S. Bach"], {"composer": "J.S. Bach"}, BACH_ID) == {
        "key": "G minor",
        "mode": "minor",
        "meter": "4/4",
        "composer": "Johann Sebastian Bach",
        "period": "Baroque",
    }


def test_tune_type_from_the_title_when_there_is_no_r_field():
    abc = "X:1\nT:Lady Haddo's Strathspey.\nM:C\nK:D\nabc|\n"
    assert labels_of(abc, [], {}, "music21:airdsAirs/book2.abc#1")["tune_type"] == "strathspey"
    abc = "X:1\nT: ADMIRAL'S -- HORNPIPE\nT: (Can be used as a Clog.)\nK:D\nabc|\n"
    assert labels_of(abc, [], {}, RYAN_ID)["tune_type"] == "hornpipe"
    assert "tune_type" not in labels_of("X:1\nT:The Rakes\nK:D\nabc|\n", [], {}, RYAN_ID)
