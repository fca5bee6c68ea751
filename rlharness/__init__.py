"""rlharness: an experimentation harness for the deadly triad of reinforcement learning."""

__version__ = "0.1.0"
