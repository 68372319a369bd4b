"""Every Plotly figure the lab draws. Each function takes plain data and returns a figure; no I/O."""
