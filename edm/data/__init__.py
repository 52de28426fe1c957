"""Annotations: the schema, Rekordbox XML in and out, JAMS and CSV export."""
