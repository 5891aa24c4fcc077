"""The text side of a tune: header fields, labels, captions and the cleaning of text
candidates. Pure functions over strings; the build (`clamp.data`) calls them per record."""
