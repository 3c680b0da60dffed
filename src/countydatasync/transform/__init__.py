"""Transform: a pure function from a raw batch to typed, validated parcels and the rows rejected with reasons."""

from countydatasync.transform.batch import TransformedBatch, TransformPlan, transform_batch
from countydatasync.transform.reasons import Reason

__all__ = ["Reason", "TransformPlan", "TransformedBatch", "transform_batch"]
