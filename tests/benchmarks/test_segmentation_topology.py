import numpy as np

from benchmarks.segmentation_topology import betti_numbers, cldice_score, topology_scores


def test_betti_numbers_count_pieces_and_holes():
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert betti_numbers(ring) == (1, 1)
    two = np.zeros((9, 9), bool)
    two[1:3, 1:3] = two[5:8, 5:8] = True
    assert betti_numbers(two) == (2, 0)
    diagonal = np.eye(6, dtype=bool)  # 8-connected: one piece; its background is one piece too
    assert betti_numbers(diagonal) == (1, 0)
    notch = np.zeros((6, 6), bool)
    notch[1:5, 1:5] = True
    notch[0:3, 2] = False  # a background channel reaching the border is no hole
    assert betti_numbers(notch)[1] == 0


def test_cldice_score_is_one_for_a_perfect_mask_and_drops_for_a_break():
    vessel = np.zeros((1, 9, 15), bool)
    vessel[0, 3:6, :] = True
    broken = vessel.copy()
    broken[0, 3:6, 7] = False
    assert cldice_score(vessel, vessel)[0] == 1.0
    assert cldice_score(vessel, broken)[0] < 1.0
    scores = topology_scores(vessel, broken)
    assert scores["betti0_error"] == 1.0 and scores["betti1_error"] == 0.0
