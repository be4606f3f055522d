"""The machinery behind the POP-ROK builder (``pop_rok.py``), one part a folder.

Generic parts (``archives``, ``publish``'s Parquet copy and Hub upload, ``grid``, ``analysis``) know nothing of
POP-ROK; ``labels``, ``sample`` and ``publish.pop_rok_copy`` hold its knowledge; ``cli`` and ``training`` sit on
top of the builder.
"""
