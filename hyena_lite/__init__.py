"""hyena_lite: distil transformers into Hyena long-convolution models.

The library of the book "Scavenging Hyena": the Hyena operator, student models, teachers,
distillation, evaluation, profiling and generation. Data flows
data -> teachers -> models -> distill -> evaluate / bench / generation.
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
