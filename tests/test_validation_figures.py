"""The confusion figures drawn from hand-made confusion matrices."""

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from callbacks.predictions import confusion_matrix_figure, most_confused_table


def test_many_classes_show_the_most_frequent_confusions_in_order():
    names = [f"class {index}" for index in range(200)]
    matrix = torch.diag(torch.full((200,), 50))
    matrix[3, 17], matrix[150, 2], matrix[17, 3], matrix[9, 8] = 19, 15, 12, 1
    rows = most_confused_table(matrix, names, num_pairs=3).splitlines()[2:]
    assert rows == ["| class 3 | class 17 | 19 |", "| class 150 | class 2 | 15 |", "| class 17 | class 3 | 12 |"]


def test_few_classes_show_the_whole_matrix_with_its_counts():
    names = [f"{index} - digit" for index in range(10)]
    matrix = torch.arange(100).reshape(10, 10) * 7
    axes = confusion_matrix_figure(MulticlassConfusionMatrix(10), matrix, names).axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == names
    assert [label.get_text() for label in axes.get_yticklabels()] == names
    assert [text.get_text() for text in axes.texts] == [str(value) for value in matrix.flatten().tolist()]
