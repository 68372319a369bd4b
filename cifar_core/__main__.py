import os
import sys

from cifar_core.config import tf_env

os.environ.update(tf_env())  # before anything imports TensorFlow

from cifar_core.cli import main  # noqa: E402

sys.exit(main())
