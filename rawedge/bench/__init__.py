"""Speed measurement across runtimes (``rawedge bench``): times, FLOP rates, peak memory."""
