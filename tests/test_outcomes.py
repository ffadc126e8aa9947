import pytest

from hrsbench.results.outcomes import decode_counts, encode_counts, pair_index


@pytest.mark.parametrize("counts", [[], [0, 5, 3, 1], [0, 300, 65535], list(range(256))])
def test_round_trip(counts):
    text = encode_counts(counts)
    assert text.startswith("u16:" if counts and max(counts) > 255 else "u8:")
    assert decode_counts(text).tolist() == counts


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_counts([-1])
    with pytest.raises(ValueError):
        encode_counts([70000])
    with pytest.raises(ValueError):
        decode_counts("x9:AAAA")


def test_pair_index_matches_targeted_order():
    image, offset = pair_index(3, 10, targeted=True)
    assert len(image) == 27 and image[:9].tolist() == [0] * 9 and image[9] == 1
    assert offset[:9].tolist() == list(range(1, 10))
    image, offset = pair_index(4, 10, targeted=False)
    assert image.tolist() == [0, 1, 2, 3] and not offset.any()
