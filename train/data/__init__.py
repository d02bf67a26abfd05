"""Label data: label files to 10-bin distributions, label sets and their splits, the decoding datasets."""
