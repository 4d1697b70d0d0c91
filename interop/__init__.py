"""DNG interoperability checks (``make interop``): rawedge DNGs through Adobe's SDK, darktable, RawTherapee, LibRaw."""
