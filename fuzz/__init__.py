"""Fuzzing rawedge's entry points with hypothesis: photo, RAW, DNG, model metadata, camera profile and
command-line inputs. Cases run in an isolated worker process (memory limit, per-case timeout, crash
detection), so a hang or crash in C code (LibRaw, libjpeg, zlib) is reported, not suffered.

    python -m fuzz.run --cases 10000          # the long run (`make fuzz`)
    pytest tests/test_fuzz.py                 # a few hundred cases per target (`make test`)
"""
