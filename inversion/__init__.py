"""DDIM inversion and reference trajectories (pure torch)."""
