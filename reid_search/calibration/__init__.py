"""Decisions on top of similarities: the compare threshold and the open-set rule ("is this
person in the gallery at all?"), fitted on held-out people and look-alike pairs, never on the
people a benchmark tests on.

* :mod:`.open_set`: the open-set rule (background-normalised margin) and its simulation;
* :mod:`.fit`: fitting threshold and rule for a model, written into its card;
* :mod:`.lookalikes`: pairs of different people who dress alike (the hard negatives).

Usage::

    from reid_search.calibration.fit import calibrate_model
"""
