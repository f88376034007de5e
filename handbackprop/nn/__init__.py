"""The verified core: layers, network, schedule, optimisers, augmentation, training loop.

Everything in this subpackage is what the gates verify; `handbackprop.code_hash("nn")`
fingerprints it so a training output can prove it ran the code the gates passed. It imports
nothing else of the project.
"""
