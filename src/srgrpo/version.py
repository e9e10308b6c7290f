"""srgrpo's version, in one place: the package (`srgrpo.__version__`), run.json records and
pyproject.toml (setuptools reads it from here) all take it from this module, a base module that
imports nothing, so a record writer never reaches up to the package's face for it."""

__version__ = "0.2.0"
