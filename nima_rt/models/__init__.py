"""Models bundled with the nima-rt wheel (package data), looked up by name."""
