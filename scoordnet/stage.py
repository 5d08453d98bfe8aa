"""Stage 1: SCoordNet trained alone on single augmented frames (docs/reference.md §5.1)."""

import numpy as np

from common import losses
from common.distribute import global_mean
from scoordnet.model import SCoordNet


class SCoordNetStage:
    """Owns the network; loss = coordinate NLL over the global batch."""

    name = "scoordnet"

    def __init__(self, width=1.0, image_hw=(64, 64)):
        self.net = SCoordNet(width=width).build_for(image_hw)
        self.nets = {"scoordnet": self.net}

    def trainable_variables(self):
        return self.net.trainable_variables

    def loss(self, batch):
        coords, sigma = self.net(batch["image"], training=True)
        total, count = losses.coord_nll_terms(coords, sigma, batch["coords"], batch["mask"])
        hits, _ = losses.accuracy_terms(coords, batch["coords"], batch["mask"])
        loss = global_mean(total, count)
        return loss, {"nll": loss, "accuracy": global_mean(hits, count, plus_one=False)}

    def validation_errors(self, data, to_train_44, frames=None, batch_size=4):
        """{'coord_error': [n] cm over the valid cells} of the first `frames` frames of a labelled
        folder; its labels are mapped by to_train_44 into the training folder's normalized frame."""
        import tensorflow as tf

        from common.data.pipelines import test_dataset
        from common.evaluation import label_errors_cm

        if getattr(self, "_forward", None) is None:
            self._forward = tf.function(lambda images: self.net(images, training=False)[0])
        errors = [label_errors_cm(self._forward(b["image"]), b["coords"], b["mask"], to_train_44)
                  for b in test_dataset(data, batch_size, stop=frames)]
        return {"coord_error": np.concatenate(errors)}

    def summary_images(self, batch, count=2):
        """Pictures of the first frames ([n, H, W, 3] in [0, 1]): input, coordinate error, σ."""
        from common import summaries

        images = batch["image"][:count]
        coords, sigma = self.net(images, training=False)
        return {"image": summaries.input_pictures(images),
                "coord_error": summaries.coordinate_pictures(coords, batch["coords"][:count],
                                                             batch["mask"][:count]),
                "sigma": summaries.sigma_pictures(sigma)}
