"""CIFAR Lab's core: data, experiment specs, models, the job queue and its workers.

Pages and the CLI call these modules; none of them imports Streamlit.
"""
