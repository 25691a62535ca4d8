"""Files other toolchains read: golden vectors (and, later, HLS configs and C headers)."""
