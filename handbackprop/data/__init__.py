"""Data subsystem: fetch, safely read, preprocess and load CIFAR-10 (and a synthetic stand-in)."""
