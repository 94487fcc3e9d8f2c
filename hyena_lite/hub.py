"""Whether the Hugging Face hub answers, asked the way huggingface_hub asks: its offline switches,
its endpoint (HF_ENDPOINT, a mirror) and its HTTP session (which honours HTTPS_PROXY); the network
answer is cached per process."""

from __future__ import annotations

import os

PROBE_FILE = (
    "openai-community/gpt2/resolve/main/config.json"  # what the gpu profile downloads first
)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
GET_IT = (
    "for GPT-2 and WikiText-103, run where the hub answers (Colab does; behind a proxy set "
    "HTTPS_PROXY, for a mirror HF_ENDPOINT) with HF_HUB_OFFLINE unset"
)
_answers: dict[str, bool] = {}


def endpoint() -> str:
    """The hub address huggingface_hub uses (https://huggingface.co unless HF_ENDPOINT names
    a mirror)."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def offline_mode() -> bool:
    """Whether the hub is switched off: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, now or when
    huggingface_hub loaded."""
    from huggingface_hub import constants

    if any(
        os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for v in OFFLINE_VARIABLES
    ):
        return True
    return bool(
        constants.is_offline_mode()
        if hasattr(constants, "is_offline_mode")
        else constants.HF_HUB_OFFLINE
    )


def reachable(timeout: float = 5.0) -> bool:
    """Whether the hub serves GPT-2's config (a HEAD request through huggingface_hub's session),
    once per endpoint."""
    if offline_mode():
        return False
    address = endpoint()
    if address not in _answers:
        from huggingface_hub.utils import get_session

        try:
            status = get_session().head(f"{address}/{PROBE_FILE}", timeout=timeout).status_code
        except (
            Exception
        ):  # DNS, refused, proxy, TLS, timeout: whatever the HTTP backend raises, no answer came
            status = None
        _answers[address] = status is not None and status < 400
    return _answers[address]


def describe() -> str:
    """Why the hub counts as unreachable here, in a few words."""
    if offline_mode():
        return "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set"
    return f"{endpoint()} does not answer"
