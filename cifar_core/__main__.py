import os
import sys

from cifar_core.config import TF_ENV_DEFAULTS

for key, value in TF_ENV_DEFAULTS.items():  # before anything imports TensorFlow
    os.environ.setdefault(key, value)

from cifar_core.cli import main  # noqa: E402

sys.exit(main())
