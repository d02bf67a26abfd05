"""The network: backbone + 10-bin head, checkpoints and the contract module export traces."""
