"""rlharness: an experimentation harness for the deadly triad of reinforcement learning."""

from rlharness import ray_env

__version__ = "0.1.0"

# before any rlharness module imports Ray, which reads its authentication mode once, at import
ray_env.use_token_if_available()
