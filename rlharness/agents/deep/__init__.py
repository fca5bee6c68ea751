"""DQN-family agents with the triad knobs, on stable-baselines3 and on RLlib."""
