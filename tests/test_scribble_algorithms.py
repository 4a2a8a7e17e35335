"""Invariants of every scribble algorithm on random masks (hypothesis), called directly: the
algorithms must keep them on their own, without synthesize()'s clean-up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.errors import DatakitError
from datakit.scribbles import ALGORITHMS, check_params, get_algorithm, synthesize
from datakit.scribbles.quality import scribble_quality

ALGOS = ["randomwalk", "skeleton", "wsl4mis"]
K = 4


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    """A coarse random label grid blown up to blobs (4 classes, some unknown 255 pixels)."""
    gh, gw = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    cells = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3, 255]), min_size=gh * gw, max_size=gh * gw))
    scale = draw(st.integers(4, 12))
    grid = np.array(cells, np.uint8).reshape(gh, gw)
    return np.kron(grid, np.ones((scale, scale), np.uint8))


def test_registry_has_the_three_algorithms() -> None:
    get_algorithm("skeleton")
    assert set(ALGOS) <= set(ALGORITHMS)
    with pytest.raises(DatakitError, match="unknown scribble algorithm 'skeletn'; known: ") as e:
        get_algorithm("skeletn")
    assert all(name in str(e.value) for name in ALGOS)


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=masks(), seed=st.integers(0, 2**32 - 1))
def test_invariants(algo: str, mask: np.ndarray, seed: int) -> None:
    fn = get_algorithm(algo)
    out = fn(mask.copy(), K, np.random.default_rng(seed))
    assert out.shape == mask.shape and out.dtype == np.uint8
    labelled = out != 255
    # every scribble pixel carries the mask's class there (255 in the mask: never scribbled)
    assert (out[labelled] == mask[labelled]).all()
    # no scribble for an absent class
    assert set(np.unique(out[labelled])) <= set(np.unique(mask[mask < K]))
    # deterministic per seed
    again = fn(mask.copy(), K, np.random.default_rng(seed))
    assert np.array_equal(out, again)
    # every non-background region of >= 50 px is reached
    q = scribble_quality(mask[None], out[None], ["background", "a", "b", "c"])
    assert (q.regions_hit[1:] == q.regions[1:]).all()


@pytest.mark.parametrize("algo", ALGOS)
def test_unknown_or_empty_masks_give_no_scribble(algo: str) -> None:
    unknown = np.full((32, 32), 255, np.uint8)
    assert (synthesize(unknown, K, algo, 0) == 255).all()
    only_bg = np.zeros((32, 32), np.uint8)
    out = synthesize(only_bg, K, algo, 0)
    assert set(np.unique(out)) == {0, 255}


@pytest.mark.parametrize("algo", ["randomwalk", "wsl4mis"])
def test_seed_changes_random_scribbles(algo: str) -> None:
    mask = np.zeros((96, 96), np.uint8)
    mask[20:70, 15:80] = 1
    a, b = synthesize(mask, 2, algo, 1), synthesize(mask, 2, algo, 2)
    assert not np.array_equal(a, b)


def test_background_stays_near_the_structures() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[90:110, 90:110] = 3
    for algo in ALGOS:
        out = synthesize(mask, K, algo, 0)
        rows, cols = np.nonzero(out == 0)
        assert len(rows) and rows.min() >= 90 - 16 and cols.max() <= 110 + 16, algo


def test_thickness_widens_the_stroke() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:54, 20:44] = 2
    thin = (synthesize(mask, K, "skeleton", 0, thickness=1) == 2).sum()
    thick = (synthesize(mask, K, "skeleton", 0, thickness=5) == 2).sum()
    assert thick > 2 * thin


def test_randomwalk_coverage_grows_with_the_fraction() -> None:
    mask = np.zeros((128, 128), np.uint8)
    mask[14:114, 14:114] = 1
    few = (synthesize(mask, 2, "randomwalk", 3, coverage=0.02) == 1).sum()
    many = (synthesize(mask, 2, "randomwalk", 3, coverage=0.3) == 1).sum()
    assert many > 3 * few


@pytest.mark.parametrize(("algo", "params", "message"), [
    ("skeleton", {"coverage": 0.1}, "takes no 'coverage'"),
    ("wsl4mis", {"thickness": 0}, "thickness must be"),
    ("randomwalk", {"coverage": 1.5}, "coverage must be"),
    ("randomwalk", {"thickness": 2.5}, "thickness must be"),
])
def test_bad_parameters_are_refused(algo: str, params: dict, message: str) -> None:
    with pytest.raises(DatakitError, match=message):
        check_params(algo, params)


def test_parse_scribbles_builds_the_synthesis_spec(tmp_path) -> None:
    from datakit.cli.scribble_opts import parse_scribbles

    mode, spec = parse_scribbles("synth:randomwalk", 7, thickness=None, coverage=0.2)
    assert mode == "none" and spec is not None
    assert (spec.algo, spec.seed, spec.params, spec.label) == ("randomwalk", 7, {"coverage": 0.2},
                                                               "synthetic:randomwalk")
    assert parse_scribbles("auto", 0, thickness=None) == ("auto", None)
    assert parse_scribbles(str(tmp_path)) == (tmp_path, None)
    with pytest.raises(DatakitError, match="--scribble-thickness only applies"):
        parse_scribbles("none", 0, thickness=3)


def test_scribble_quality_figures() -> None:
    """Counts, agreement and coverage (mean over measured slices of % of image pixels) by hand."""
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[0, :, 5:] = 1
    masks[1] = 255  # no mask: the slice is not measured
    scribbles = np.full((3, 10, 10), 255, np.uint8)
    scribbles[0, 0, :8] = (0, 0, 0, 0, 0, 1, 1, 0)  # class 0: 6 px of which 5 agree; class 1: 2 px
    scribbles[1, 0, :4] = 1  # ignored with its slice
    scribbles[2, 3, :5] = 0
    q = scribble_quality(masks, scribbles, ["background", "fg"])
    assert q.slices == 2 and q.pixels == 100
    assert q.scribble_px.tolist() == [11, 2] and q.agree_px.tolist() == [10, 2]
    np.testing.assert_allclose(q.agreement, [10 / 11, 1.0])
    np.testing.assert_allclose(q.coverage_pct, [(6 + 5) / 2, (2 + 0) / 2])  # % of 100 px, over 2 slices
    assert q.regions.tolist() == [2, 1] and q.regions_hit.tolist() == [2, 1]
    empty = scribble_quality(masks[1:2], scribbles[1:2], ["background", "fg"])
    assert empty.slices == 0 and empty.coverage_pct.tolist() == [0.0, 0.0]
