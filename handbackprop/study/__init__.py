"""The study around the verified core: what the config means (plan), the lam grids (grids),
one training run (runs) and the tables that aggregate runs (tables)."""
