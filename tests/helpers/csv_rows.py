"""Reading the CSV files runs write (prediction files, timing, disagreements) as the tests check them."""

import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))
