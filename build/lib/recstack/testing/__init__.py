"""Behavioural contracts that ship with the library: a backend's test subclasses one and names its URL."""
