"""The confusion figures drawn from hand-made confusion matrices."""

import torch

from analysis.figures import confusion_matrix_figure, most_confused_figure


def test_many_classes_show_the_most_frequent_confusions_in_order():
    names = [f"class {index}" for index in range(200)]
    matrix = torch.diag(torch.full((200,), 50))
    matrix[3, 17], matrix[150, 2], matrix[17, 3], matrix[9, 8] = 19, 15, 12, 1
    (axes,) = most_confused_figure(matrix, names, num_pairs=3).axes
    assert [label.get_text() for label in axes.get_yticklabels()] == [
        "class 3 → class 17",
        "class 150 → class 2",
        "class 17 → class 3",
    ]
    assert [bar.get_width() for bar in axes.patches] == [19, 15, 12]


def test_few_classes_show_the_whole_matrix_with_its_counts():
    names = [f"{index} - digit" for index in range(10)]
    matrix = torch.arange(100).reshape(10, 10) * 7
    axes = confusion_matrix_figure(matrix, names).axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == names
    assert [label.get_text() for label in axes.get_yticklabels()] == names
    assert [text.get_text() for text in axes.texts] == [str(value) for value in matrix.flatten().tolist()]
