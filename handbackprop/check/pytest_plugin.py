"""pytest plugin (registered as the `handbackprop` pytest11 entry point):

    def test_my_batchnorm(assert_backward_matches_autograd):
        assert_backward_matches_autograd(MyBatchNorm)             # at MyBatchNorm.example(rng)
        assert_backward_matches_autograd(MyBatchNorm, x, params)  # or at a given point

A failure raises with the checker's table, which names the wrong array and how wrong it is.
Nothing heavy is imported until the fixture is used.
"""
import pytest


@pytest.fixture
def assert_backward_matches_autograd():
    from .checker import assert_backward_matches_autograd as check

    return check
