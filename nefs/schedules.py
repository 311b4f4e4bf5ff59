"""Learning-rate schedules as pure functions of the step (optax semantics, step counted from 0)."""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    value: float = 5e-4

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class WarmupCosine:
    init_value: float = 1e-6
    peak_value: float = 1e-3
    warmup_steps: int = 10
    decay_steps: int = 1000
    end_value: float = 1e-6

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.init_value + (self.peak_value - self.init_value) * step / self.warmup_steps
        span = max(self.decay_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0), span) / span
        return self.end_value + (self.peak_value - self.end_value) * 0.5 * (1 + math.cos(math.pi * t))
