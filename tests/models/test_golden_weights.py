import hashlib

import numpy as np

from golden_weights import expected_sha256, generate_tensor, keys


def test_recipe_reproduces_every_golden_tensor():
    expected = expected_sha256()
    seen = 0
    for items in keys().values():
        for name, shape, dtype in items:
            arr = generate_tensor(name, shape, dtype)
            assert list(arr.shape) == shape
            digest = hashlib.sha256(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
            assert digest.hexdigest() == expected[name], name
            seen += 1
    assert seen == len(expected) == 1055
