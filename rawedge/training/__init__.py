"""Training (``rawedge train``): recipes, the trainer loop (single process or torchrun DDP), tiled
full-image inference and the metrics shared by validation and ``rawedge eval``."""
