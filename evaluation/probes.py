"""How well frozen features classify: a weighted k-NN classifier and a linear probe.

Both are the standard yardsticks for self-supervised features (Wu et al. 2018 for the k-NN,
Chen et al. 2020 for the linear probe); run on raw pixels they give the floor the features
should clear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    r"""Class predicted for each test sample by its k nearest training samples, by cosine similarity.

    Each neighbour votes for its class with weight :math:`e^{s/\tau}` (s its cosine similarity),
    as in Wu et al. (2018, "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination"); the class with the largest total wins. Test samples are processed in
    chunks, so memory stays at ``chunk × N_train`` similarities.

    Shape:
        - train_features: ``(N, D)``; train_labels: ``(N,)`` int
        - test_features: ``(M, D)``
        - output: ``(M,)`` int64
    """
    keys = F.normalize(train_features.float(), dim=1)
    k = min(k, keys.shape[0])
    predictions = []
    for start in range(0, test_features.shape[0], chunk):
        queries = F.normalize(test_features[start : start + chunk].float(), dim=1)
        similarity, index = (queries @ keys.T).topk(k, dim=1)
        votes = torch.zeros(queries.shape[0], num_classes, device=queries.device)
        votes.scatter_add_(1, train_labels[index].long(), (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def linear_probe_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    max_iter: int = 300,
    regularisation: float = 1.0,
) -> torch.Tensor:
    """Class predicted by a multinomial logistic regression fitted on standardised training features.

    scikit-learn's ``LogisticRegression`` (L-BFGS, L2 penalty of strength ``1 / regularisation``);
    features are standardised with the training set's mean and standard deviation.

    Shape:
        - train_features: ``(N, D)``; train_labels: ``(N,)``
        - test_features: ``(M, D)``
        - output: ``(M,)`` int64
    """
    from sklearn.linear_model import LogisticRegression

    x = train_features.double()
    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
    standardise = lambda f: ((f.double() - mean) / std).numpy()
    model = LogisticRegression(C=regularisation, max_iter=max_iter)
    model.fit(standardise(train_features), train_labels.numpy())
    return torch.from_numpy(model.predict(standardise(test_features))).long()


def dataset_tensors(dataset, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a data set of ``(image, label, ...)`` samples, the first ``limit`` (0: all).

    A ``TensorDataset`` hands its tensors over as they are; any other data set is read in batches.

    Shape:
        - outputs: ``(N, C, H, W)``, ``(N,)``
    """
    tensors = getattr(dataset, "tensors", None)
    if tensors is None:
        from torch.utils.data import DataLoader

        batches = list(DataLoader(dataset, batch_size=1024, shuffle=False))
        tensors = tuple(torch.cat([b[i] for b in batches]) for i in range(2))
    images, labels = tensors[0], tensors[1]
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


@torch.no_grad()
def features_of(encode, images: torch.Tensor, batch: int = 1024, device: torch.device | str = "cpu") -> torch.Tensor:
    """``encode`` (e.g. a model's ``forward``) applied batch by batch on ``device``, gathered on the CPU.

    Shape:
        - images: ``(N, ...)``
        - output: ``(N, D)``
    """
    return torch.cat([encode(images[i : i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)])


def probe_accuracies(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
) -> dict[str, float]:
    """Test accuracy of the weighted k-NN (cosine, k = 200) and of the linear probe: ``{"knn": .., "linear": ..}``.

    Shape:
        - train_features: ``(N, D)``; train_labels: ``(N,)``
        - test_features: ``(M, D)``; test_labels: ``(M,)``
    """
    knn = weighted_knn_predict(train_features, train_labels, test_features, num_classes)
    linear = linear_probe_predict(train_features, train_labels, test_features)
    hit = lambda predicted: (predicted == test_labels.long()).double().mean().item()
    return {"knn": hit(knn), "linear": hit(linear)}
