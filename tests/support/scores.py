"""VQAScore computed the plain way, one pair per forward, through the model's own loss: an oracle for code that
scores in batches (VQAScore, the CLI, training outputs)."""

import torch
from PIL import Image

from tests.support.original_reference import vqa_prompt


@torch.no_grad()
def forward_vqascores(model, processor, images, texts) -> torch.Tensor:
    """exp(-loss) of the answer "Yes" for each (image path or PIL image, text), each pair in its own forward."""
    assert not model.training, "put the model in eval mode: dropout would make the oracle random"
    scores = []
    for image, text in zip(images, texts):
        image = image if isinstance(image, Image.Image) else Image.open(image)
        inputs = processor(images=[image], text=[vqa_prompt(text)], text_target=["Yes"], return_tensors="pt")
        scores.append(torch.exp(-model(**inputs.to(model.device)).loss.float()))
    return torch.stack(scores).cpu()
