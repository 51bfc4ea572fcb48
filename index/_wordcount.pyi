from collections.abc import Callable

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
