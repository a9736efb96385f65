"""Explain a tabular classifier: Shapley values and LIME weights per column, drawn as bar charts.

Runs offline: scikit-learn ships the wine data set (178 wines, 13 chemical measurements, 3 cultivars).
"""

import matplotlib as mpl

mpl.use("Agg")  # files, no window
import torch
from sklearn.datasets import load_wine

import netsight as ns

# a small classifier on standardised columns
wine = load_wine()
x_all = torch.tensor(wine.data, dtype=torch.float32)
x_all = (x_all - x_all.mean(0)) / x_all.std(0)
y_all = torch.tensor(wine.target)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for _ in range(200):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x_all), y_all).backward()
    opt.step()
model.eval()

# Shapley values of four wines' predicted class, switching columns off to 50 background wines
x = x_all[[0, 60, 130, 170]]
background = x_all[torch.randperm(len(x_all))[:50]]
shap = ns.explain(model, x, method="kernel_shap", background=background, n_samples=2**13)
print(shap.attributions.shape)  # [4, 13]: one value per wine and column
print(shap.meta["exact"])  # 13 columns, 8,190 coalitions: all enumerated, the exact Shapley values
with torch.no_grad():
    score = model(x).gather(1, shap.target[:, None])[:, 0]  # the predicted class's logit
print(float((shap.attributions.sum(1) - (score - shap.meta["base_value"])).abs().max()))  # ~0: they add up

# the picture: each wine's eight strongest columns, the rest summed in grey
fig = shap.figure(names=list(wine.feature_names), top=8)
fig.savefig("wine_shap.png", dpi=100)
shap.save("wine_shap/", names=list(wine.feature_names))  # one PNG per wine

# LIME on the same wines: a weighted linear fit around each one (columns set to the background mean)
lime = ns.explain(model, x, method="lime", baseline=background.mean(0), n_samples=1000)
agree = torch.nn.functional.cosine_similarity(lime.attributions, shap.attributions, dim=1)
print(agree)  # how far the two methods tell the same story, per wine
