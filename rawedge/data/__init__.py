"""Training data: paired sRGB/RAW samples made from RAW files and photos (``rawedge data prepare``).

numpy-only modules: ``rggb`` (CFA phase), ``manifest`` (the data folder's JSON and its splits),
``align`` (camera-preview alignment and binning), ``synthetic`` (unprocessed photos with sensor noise),
``pairs`` (building a data folder). ``dataset`` holds the torch Dataset and imports torch.
"""
