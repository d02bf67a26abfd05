"""The model contract: inputs, outputs, metadata and preprocessing every layer agrees on, and the allowed run
settings (the lowest layer).
"""
