"""What the tests and the scripts (benchmarks, soak) share to run the lab for real, outside the
product's own code paths: generated data sets (`datagen`), the lab's processes (`procs`: the CLI,
workers, submitting and running a worker until idle), the Streamlit server of a browser test or
benchmark (`appserver`) and a local Ray cluster (`raycluster`). No other cifar_core module imports
this package."""
