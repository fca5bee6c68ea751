"""Off-policy agents: batched linear learners (deep agents live beside them)."""
