"""handbackprop: a hand-written NumPy neural-network package for a reproducible CIFAR-10 study."""
