"""Loss functions as plain tensor maths (no Lightning), usable by any model in the suite."""

from losses.center import CenterLoss, center_distance
from losses.classification import CLASSIFICATION_LOSSES, ClassificationLoss, frequency_class_weights
from losses.smoothed_cross_entropy import smoothed_cross_entropy
from losses.triplet import triplet_ranking_loss

__all__ = [
    "CLASSIFICATION_LOSSES",
    "CenterLoss",
    "ClassificationLoss",
    "center_distance",
    "frequency_class_weights",
    "smoothed_cross_entropy",
    "triplet_ranking_loss",
]
