"""Train a litsuite model.

One device (CPU or GPU)::

    python train.py --model linear_ae
    python train.py --model linear_ae --data fashion_mnist --model.k 32

Several devices on one machine (DDP; gloo on CPU, NCCL on GPU)::

    python train.py --model linear_ae --devices 2

Resume the newest run of a model from its ``last.ckpt``::

    python train.py --model linear_ae --resume auto

``python train.py --help`` lists models, data sets and shortcuts. Runs are written to
``runs/<model>-<data>-<stamp>/``; evaluate one with ``python evaluate.py --run last``.
"""

import sys

from litsuite.frontend import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
