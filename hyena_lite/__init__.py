"""hyena_lite: distil transformers into Hyena long-convolution models.

The library of the book "Scavenging Hyena". The core, one job a module: fftconv, operator (and
its fastpath, cudagraph), students and models, capture, calibration, losses, distill (stages,
recipes), training (and checkpoints, runs: identity, locks, safe files), data, teachers, evaluate
and probes, decoding and generation, modal, provenance, profiles, cli (and validation). Data flows
data -> teachers -> models -> distill -> evaluate / decoding / generation.
`hyena_lite.experiments` (benchmarks, sweeps, comparisons, the commands that write results files)
builds on the core and is never imported by it.
"""

from hyena_lite.calibration import calibrate_mixers
from hyena_lite.fftconv import direct_conv, fftconv
from hyena_lite.models import (
    HyenaGPT2LMHeadModel,
    HyenaGPTNeoXForCausalLM,
    HyenaLlamaForCausalLM,
    HyenaMixer,
    convert,  # registers the students with the Auto classes
    layer_mixers,
    parameter_table,
)
from hyena_lite.operator import HyenaFilter, HyenaOperator
from hyena_lite.profiles import Profile, get_profile

__version__ = "0.1.0"
