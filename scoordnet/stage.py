"""Stage 1: SCoordNet trained alone on single augmented frames (docs/reference.md §5.1)."""

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

    def summary_images(self, batch, count=2):
        """Pictures of the first frames ([n, H, W, 3] in [0, 1]): input, coordinate error, σ."""
        from common import summaries

        images = batch["image"][:count]
        coords, sigma = self.net(images, training=False)
        return {"image": summaries.input_pictures(images),
                "coord_error": summaries.coordinate_pictures(coords, batch["coords"][:count],
                                                             batch["mask"][:count]),
                "sigma": summaries.sigma_pictures(sigma)}
