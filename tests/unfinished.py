"""An image still being made, for the encoders that take one band by band."""

import numpy as np


class Unfinished:
    """Its rows stay black until someone waits for them (`rows`, as an encoder is given it), which
    then makes them: an encode that reads a row before asking for it reads black."""

    def __init__(self, final: np.ndarray) -> None:
        self.final = final
        self.image = np.zeros_like(final)
        self.asked: list[tuple[int, int]] = []

    def rows(self, top: int, bottom: int) -> None:
        self.asked.append((top, bottom))
        self.image[top:bottom] = self.final[top:bottom]
