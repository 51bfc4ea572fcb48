import numpy as np
import numpy.typing as npt

MAX_TERMS: int

def top_k(
    ptr: npt.NDArray[np.int64],
    post_doc: npt.NDArray[np.int32],
    post_imp: npt.NDArray[np.float32],
    terms: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32],
    rest: npt.NDArray[np.float64],
    n_docs: int,
    out_doc: npt.NDArray[np.int64],
    out_score: npt.NDArray[np.float32],
    allow: npt.NDArray[np.bool_] | None = None,
    /,
) -> int: ...
