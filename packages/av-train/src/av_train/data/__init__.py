"""Loading prepared UASpeech trees for training: manifest, dataset, batching, DataModule."""
