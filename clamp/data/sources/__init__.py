"""Sources of raw music records: the music21 corpus, a local directory, the web."""
