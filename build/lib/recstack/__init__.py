"""recstack: an end-to-end recommendation platform.

Data flows one way: ingestion → storage → processing → models → registry → serving → feedback.
"""

__version__ = "0.1.0"
