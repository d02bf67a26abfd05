"""Dataset building: reference photos, graded distortions and their human-score labels."""
