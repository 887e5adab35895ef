"""What a job asks of the Replicate model configured for its type.

The local provider's models (`genrail/static-ad`, `genrail/ugc-video`, `genrail/tts`) take the
job's input as it is. A real model takes its own inputs, so each model genrail knows has a
small mapping from the job's fields; `REPLICATE_MODEL_<TYPE>` picks the model, with or
without a version (`owner/name:version`). A model with no mapping here gets the job's input
unchanged, which suits a model of your own built to take it.

| job type | model | its inputs, from the job | its output |
|---|---|---|---|
| static_ad | black-forest-labs/flux-kontext-pro | prompt (headline, call to action, style, colors), input_image (the product photo), aspect_ratio, output_format png | one image URL |
| static_ad | black-forest-labs/flux-schnell | prompt, aspect_ratio, output_format png (no product photo) | a list of image URLs |
| ugc_video | minimax/video-01 | prompt (the script and style), first_frame_image (the product photo) | one MP4 URL |
| tts | jaaari/kokoro-82m | text, voice (`af_bella` unless the job names a Kokoro voice), speed | one WAV URL |
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

Input = dict[str, Any]

KOKORO_VOICES = frozenset({"af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
                           "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
                           "am_liam", "am_michael", "am_onyx", "am_puck", "bf_alice", "bf_emma", "bf_isabella",
                           "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis"})
# The aspect ratios FLUX models take, as fractions, to pick the nearest to the job's size.
FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")


def ad_prompt(job: Input) -> str:
    colors = f" Brand colors {', '.join(job['brand_colors'])}." if job.get("brand_colors") else ""
    cta = f' A button reading "{job["cta"]}".' if job.get("cta") else ""
    return (f'A {job.get("style", "bold")} square product advertisement with the headline "{job["headline"]}".'
            f"{cta}{colors} Clean typography, studio lighting, the product as the hero.")


def aspect_ratio(job: Input) -> str:
    wanted = Fraction(int(job.get("width", 1080)), int(job.get("height", 1080)))
    return min(FLUX_RATIOS, key=lambda r: abs(Fraction(*map(int, r.split(":"))) - wanted))


def flux_kontext(job: Input) -> Input:
    out = {"prompt": ad_prompt(job), "aspect_ratio": aspect_ratio(job), "output_format": "png"}
    if job.get("product_image"):
        out["input_image"] = job["product_image"]
    return out


def flux_schnell(job: Input) -> Input:
    return {"prompt": ad_prompt(job), "aspect_ratio": aspect_ratio(job), "output_format": "png", "num_outputs": 1}


def minimax_video(job: Input) -> Input:
    out = {"prompt": f"{job['script']} ({job.get('style', 'vibrant')} user-generated video style)",
           "prompt_optimizer": True}
    if job.get("product_image"):
        out["first_frame_image"] = job["product_image"]
    return out


def kokoro(job: Input) -> Input:
    voice = job.get("voice", "default")
    return {"text": job["text"], "voice": voice if voice in KOKORO_VOICES else "af_bella", "speed": 1}


MAPPINGS: dict[str, Callable[[Input], Input]] = {
    "black-forest-labs/flux-kontext-pro": flux_kontext,
    "black-forest-labs/flux-schnell": flux_schnell,
    "minimax/video-01": minimax_video,
    "jaaari/kokoro-82m": kokoro,
}


def model_input(model: str, job_input: Input) -> Input:
    """The input to send `model` (`owner/name` or `owner/name:version`) for this job."""
    mapping = MAPPINGS.get(model.split(":", 1)[0])
    return mapping(job_input) if mapping else job_input
