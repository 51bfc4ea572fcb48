from collections.abc import Callable

import numpy as np
import numpy.typing as npt

class Counter:
    def __init__(
        self,
        resolve: Callable[[str], tuple[int, int]],
        normalize: Callable[[str], str],
        is_nfkc: Callable[[str], bool],
    ) -> None: ...
    def analyze(
        self, titles: list[str], bodies: list[str], title_weight: float, /
    ) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]: ...
    def words(self, text: str, /) -> list[str]: ...

def place(
    post_doc: npt.NDArray[np.int32],
    post_imp: npt.NDArray[np.float32],
    dest: npt.NDArray[np.int64],
    run_len: npt.NDArray[np.int32],
    run_idf: npt.NDArray[np.float32],
    doc: npt.NDArray[np.int32],
    tf: npt.NDArray[np.float32],
    doc_norm: npt.NDArray[np.float32],
    /,
) -> None: ...
