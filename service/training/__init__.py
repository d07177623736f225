"""Training of pack text models (`redline train`, `python -m service.training`).

    data.py   labelled JSON lines: read, digest, drop rows whose text is in a held-out file
    fit.py    the linear model over service.engine.textmodel's features (numpy, deterministic)
    choose.py thresholds chosen on dev data, and the figures at them
    card.py   the manifest, the weights file and the model card a pack ships
    cli.py    the command
"""
