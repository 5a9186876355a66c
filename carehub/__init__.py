"""CareHub: the realtime back end of a smart hospital's patient services."""

__version__ = "0.1.0"
