"""Regenerates the golden .npy fixtures NpyTest reads. Run from this directory: python3 make_fixtures.py
The tests never run this; it records how the committed bytes were made (numpy 2.4.6)."""
import numpy as np
from numpy.lib import format as fmt


def save(name, a, version=None):
    with open(name, "wb") as f:
        if version is None:
            np.save(f, a)
        else:
            fmt.write_array(f, a, version=version)


arange = np.arange(6, dtype="<f4").reshape(2, 3)
save("arange_f32_2x3.npy", arange)
save("arange_f32_2x3_v2.npy", arange, (2, 0))
save("arange_f32_2x3_v3.npy", arange, (3, 0))
save("f16_2x3.npy", np.array([[0, 1, -2.5], [65504, np.inf, 2.0**-24]], dtype="<f2"))
save("i32_3.npy", np.array([-2147483648, 0, 2147483647], dtype="<i4"))
save("i64_2x1x2.npy", np.array([-(2**63), -1, 1, 2**63 - 1], dtype="<i8").reshape(2, 1, 2))
save("u8_5.npy", np.array([0, 1, 127, 128, 255], dtype="|u1"))
save("bool_2x2.npy", np.array([[True, False], [False, True]]))
save("scalar_f32.npy", np.float32(3.5).reshape(()))
save("empty_f32_0x3.npy", np.zeros((0, 3), dtype="<f4"))
save("big_endian_f4.npy", arange.astype(">f4"))
save("fortran_f4.npy", np.asfortranarray(arange))
save("f8.npy", arange.astype("<f8"))
save("c8.npy", arange.astype("<c8"))
