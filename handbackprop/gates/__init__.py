"""The gates that must pass before anything trains: gradcheck, overfit, reference trajectory."""
