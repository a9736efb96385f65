"""Explain a torchvision ResNet-18 on a photo with Grad-CAM and integrated gradients.

Random weights by default, so it runs offline; pass ``--pretrained`` where the weights can be
downloaded (or are cached) to see meaningful maps.

    python docs/examples/explain_torchvision.py [--pretrained]
"""

from __future__ import annotations

import sys

import torch
import torchvision
from skimage.data import chelsea

import netsight as ns
from netsight.render import save_png

weights = torchvision.models.ResNet18_Weights.DEFAULT if "--pretrained" in sys.argv else None
model = torchvision.models.resnet18(weights=weights).eval()

# The photo as a batch of one, resized and normalised like ImageNet.
image = torch.from_numpy(chelsea()).permute(2, 0, 1).float() / 255  # [3, 300, 451]
picture = torch.nn.functional.interpolate(image[None], size=(224, 224), mode="bilinear", antialias=True)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
x = (picture - mean) / std

print(ns.list_methods("*cam*"))  # the CAM family; ns.list_methods() lists every method

cam = ns.explain(model, x, method="grad_cam", layer="layer4")  # target=None: the predicted class
print(cam.method, cam.layer, tuple(cam.attributions.shape), "class", int(cam.target[0]))

ig = ns.explain(model, x, target=cam.target, method="integrated_gradients", steps=16)
print("completeness error", float(ig.meta["completeness_error"].abs().max()))

save_png(cam.overlay(picture)[0], "chelsea_grad_cam.png")
save_png(ig.overlay(picture)[0], "chelsea_integrated_gradients.png")
save_png(torch.from_numpy(chelsea()), "chelsea.png")  # the photo itself, for `netsight explain chelsea.png`
