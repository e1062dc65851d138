"""Middo Studio core library: model-informed dynamic data optimization for SFT data."""

__version__ = "0.1.0"
