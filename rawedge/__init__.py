"""rawedge: camera JPEGs back to camera RAW."""
__version__ = "0.1.0"
