"""The fleet backend: many DQN members trained at once in one vectorised computation.

Modules, one responsibility each: `streams` (every member's random numbers,
from its seed), `envs` (batched envs with SB3's auto-reset semantics),
`networks` (stacked parameters, the Q-network), `replay` (compact per-member
rings, n-step windows, prioritised sampling), `learner` (the update as a
function of parameters, batch and per-member knobs) and `run` (train a fleet,
log and judge each member).
"""
