"""unitdissect: find out what the individual units of a vision network do, and publish it."""

__version__ = "0.1.0"

__all__ = ["__version__"]
