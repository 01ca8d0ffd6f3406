"""The LightningModule's metrics and scheduler wiring, checked against hand-computed cases."""

import pytest
import torch

from lightning_modules.classifier import ImageClassifier

LENET = {"_target_": "lightning_modules.nets.lenet.LeNet5"}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1}


def classifier(num_classes: int = 10, **kwargs) -> ImageClassifier:
    return ImageClassifier(
        net=LENET, optimizer=SGD, scheduler=None, input_shape=(1, 28, 28), num_classes=num_classes, **kwargs
    )


def logits_ranking(true_label: int, rank: int, num_classes: int = 10) -> torch.Tensor:
    """Logits in which `true_label` is the rank-th highest score (rank 1 = the prediction)."""
    others = [c for c in range(num_classes) if c != true_label]
    order = others[: rank - 1] + [true_label] + others[rank - 1 :]
    logits = torch.empty(num_classes)
    logits[order] = torch.linspace(10.0, 1.0, num_classes)
    return logits


def test_top1_and_top5_match_a_hand_computed_case():
    # true class ranked 1st, 3rd, 6th, 5th and 10th: top-1 hits 1 of 5, top-5 hits 3 of 5
    labels = torch.tensor([3, 0, 7, 9, 4])
    ranks = [1, 3, 6, 5, 10]
    logits = torch.stack([logits_ranking(label.item(), rank) for label, rank in zip(labels, ranks)])
    assert logits.argmax(1)[0] == 3 and logits.argmax(1)[1] != 0
    module = classifier()
    module.val_metrics.update(preds=logits, target=labels, value=torch.zeros(5))
    result = module.val_metrics.compute()
    assert result["val/top1"].item() == pytest.approx(1 / 5)
    assert result["val/top5"].item() == pytest.approx(3 / 5)


def test_accuracy_is_over_samples_not_averaged_over_classes():
    # class 0 has 3 samples all right, class 1 one sample wrong: micro accuracy 3/4, a macro average would say 1/2
    logits = torch.stack([logits_ranking(0, 1), logits_ranking(0, 1), logits_ranking(0, 1), logits_ranking(1, 2)])
    module = classifier()
    module.test_metrics.update(preds=logits, target=torch.tensor([0, 0, 0, 1]), value=torch.zeros(4))
    assert module.test_metrics.compute()["test/top1"].item() == pytest.approx(3 / 4)


def test_label_smoothing_reaches_the_loss():
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    plain, smoothed = classifier().loss_fn(logits, labels), classifier(label_smoothing=0.2).loss_fn(logits, labels)
    assert not torch.isclose(plain, smoothed)


def test_hyperparameters_rebuild_the_same_network():
    module = classifier(num_classes=7)
    rebuilt = ImageClassifier(**module.hparams)
    rebuilt.load_state_dict(module.state_dict())
    images = torch.randn(2, 1, 28, 28)
    assert torch.equal(module.eval()(images), rebuilt.eval()(images))
