"""Image -> vector: the towers and their layers, model files and cards, runtime backends,
export to fast formats, the embedder and the engines it runs on (local, Ray)."""
