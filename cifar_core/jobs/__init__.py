"""Jobs: the SQLite store (the only module with SQL), the queue's lease protocol, the worker
processes that run jobs, and the queue's read models for the pages."""
