"""Models that break the output contract on purpose, to provoke the service's output validation.

Chosen by the request's amount so one server exercises every failure: 111 -> NaN, 222 -> a
probability of 1.5, 333 -> the wrong shape. Any other amount gets a valid 0.1.
"""

from __future__ import annotations

import numpy as np


class ContractBreakingClassifier:
    def predict_proba(self, frame):
        amount = frame["amount"].to_numpy()
        out = np.tile([0.9, 0.1], (len(frame), 1))
        out[amount == 111, 1] = np.nan
        out[amount == 222, 1] = 1.5
        if (amount == 333).any():
            return out[:, :1]
        return out
