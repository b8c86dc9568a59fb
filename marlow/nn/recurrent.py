"""Recurrent cells for every recurrent network in marlow, with LeCun-normal recurrent kernels.

flax's GRU and LSTM cells draw their recurrent kernels orthogonally, with a QR factorisation. A run
initialises all its vmapped seeds in one jitted program, which batches those QRs; on XLA's CPU runtime
(jaxlib 0.10.2) LAPACK's QR splits a batch over the intra-op thread pool and waits for it, so two QRs that
the program runs side by side can each hold a pool thread while waiting for the other's: the process then
sits at 0% CPU forever (seen with TAPPO's teammate model, MAMBA's RSSM, G2A's bidirectional GRU and
CommNet's LSTM on 2 cores; tests/test_recurrent_init.py runs a 3-seed init of each under a timeout).
So the recurrent kernels are LeCun-normal (ours; none of the papers states its initialisation), like the
input kernels.
"""

from __future__ import annotations

import flax.linen as nn

RECURRENT_INIT = nn.initializers.lecun_normal()


def gru_cell(features: int, **kwargs) -> nn.GRUCell:
    return nn.GRUCell(features=features, recurrent_kernel_init=RECURRENT_INIT, **kwargs)


def lstm_cell(features: int, **kwargs) -> nn.OptimizedLSTMCell:
    return nn.OptimizedLSTMCell(features=features, recurrent_kernel_init=RECURRENT_INIT, **kwargs)
