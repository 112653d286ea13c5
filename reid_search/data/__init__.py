"""Files -> labelled items: dataset layouts, metadata, evaluation protocols, TFRecords, the one
image decoder, and the synthetic people of the demo and tests."""
