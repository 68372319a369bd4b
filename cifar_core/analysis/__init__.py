"""Analysis of finished runs: diagnosis, statistics (McNemar, confusion), predictions and error
analysis, deployment cost and export, model choice, sweep findings and the reproduce report."""
