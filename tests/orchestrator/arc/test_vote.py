from orchestrator.domains.arc.vote import solved, vote

A, B, C = ((1,),), ((2,),), ((3,),)


def test_the_majority_grid_is_the_first_attempt():
    assert vote([B, A, A, C, A, B]) == (A, B)


def test_ties_go_to_the_grid_predicted_first():
    assert vote([C, B, A, B, C, A]) == (C, B)


def test_fewer_distinct_predictions_give_fewer_attempts():
    assert vote([A, A]) == (A,)
    assert vote([]) == ()


def test_solved_needs_every_test_output_among_its_attempts():
    assert solved([(A, B), (C,)], [B, C])
    assert not solved([(A, B), (A,)], [B, C])
    assert not solved([()], [A])
