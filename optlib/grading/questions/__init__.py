"""One module per chapter: ``chNN_name.py`` holds ``QUESTIONS`` for ``solutions/NN_name.ipynb``."""
