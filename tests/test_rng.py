"""Randomness enters only through an explicit seed: generators, seed sequences and child streams."""

import numpy as np
import pytest

from shearcorr.errors import ShearcorrError
from shearcorr.rng import as_generator, child_seed, seed_sequence


def test_seeds():
    assert as_generator(4).random() == as_generator(4).random()
    assert as_generator(4).random() != as_generator(5).random()
    g = np.random.default_rng(0)
    assert as_generator(g) is g
    for bad in (-1, 1.5, "x", True):
        with pytest.raises(ShearcorrError, match="seed"):
            as_generator(bad)
    children = seed_sequence(7).spawn(3)
    assert seed_sequence(7).spawn(3)[2].generate_state(2).tolist() == children[2].generate_state(2).tolist()


def test_child_seed_is_the_spawned_stream_without_spawning():
    state = lambda ss: ss.generate_state(4).tolist()  # noqa: E731
    assert state(child_seed(7, 2)) == state(np.random.SeedSequence(7).spawn(5)[2])
    assert state(child_seed(7, 2, 0)) == state(np.random.SeedSequence(7).spawn(3)[2].spawn(1)[0])
    root = np.random.SeedSequence(11)
    a = child_seed(root, 1)
    assert root.n_children_spawned == 0  # the root was not consumed
    assert state(a) == state(np.random.SeedSequence(11).spawn(2)[1])
    assert state(child_seed(7, 1)) != state(child_seed(7, 2)) != state(child_seed(8, 2))
    with pytest.raises(ShearcorrError, match="non-negative"):
        child_seed(7, -1)
