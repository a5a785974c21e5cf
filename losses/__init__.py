from losses.base import DistillationObjective, DistillBatch, DistillTerm
from losses.ce import CrossEntropyTerm
from losses.kd import KDTerm

__all__ = ["DistillationObjective", "DistillBatch", "DistillTerm", "CrossEntropyTerm", "KDTerm"]
