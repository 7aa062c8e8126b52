"""The package version, in a module of its own so that no layer needs to import the top-level package."""

__version__ = "0.1.0"
