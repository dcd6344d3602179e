"""Small Iris-shaped CSV texts for the data tests."""

from __future__ import annotations

HEADER = "sepal_length,sepal_width,petal_length,petal_width,species"
GOOD_ROWS = (
    "5.1,3.5,1.4,0.2,setosa",
    "7.0,3.2,4.7,1.4,versicolor",
    "6.3,3.3,6.0,2.5,virginica",
    "4.9,3.0,1.4,0.2,setosa",
)


def csv_text(*rows: str, header: str = HEADER) -> str:
    """A CSV file's text: the header, then the rows."""
    return "\n".join([header, *rows]) + "\n"
