"""kolmo's version, in a module below every other: it imports nothing, so any module (and
setup.cfg's ``attr:``) can read it without importing the rest of the package."""

__version__ = "0.1.0"
