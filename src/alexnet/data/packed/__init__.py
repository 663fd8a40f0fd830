"""The packed dataset format (``alexnet prepare``): ``format.py`` defines it, ``writer.py`` writes it,
``reader.py`` reads it back for training."""
