"""edm: learn EDM track structure from a DJ's own library.

Data flow: audio → :mod:`edm.backbones` → :mod:`edm.store` → :mod:`edm.heads` →
:mod:`edm.decode` → analysis (JSON, JAMS, Rekordbox XML, PNG).
"""

__version__ = "0.1.0"
