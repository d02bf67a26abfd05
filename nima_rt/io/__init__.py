"""Files in and out: decoding images, walking inputs, model files, score files (writers and reader), progress
lines.
"""
