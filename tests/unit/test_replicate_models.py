"""Each real Replicate model genrail maps a job type to: what the job sends it, and what
genrail reads back from a prediction of that model (recorded shapes, tests/fixtures/replicate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrail_commands.predictions import Prediction, output_host_allowed, output_urls
from genrail_pipeline.replicate_models import MAPPINGS, model_input
from genrail_runtime.settings import FetchSettings

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "replicate"
AD = {"headline": "Built for the long way round", "cta": "Shop now", "style": "vibrant", "brand_colors": ["#1d4ed8"],
      "width": 1080, "height": 1920, "product_image": "https://shop.example.com/img/boots.jpg"}


def test_a_static_ad_asks_flux_for_its_words_its_shape_and_its_product_photo():
    sent = model_input("black-forest-labs/flux-kontext-pro", AD)
    assert sent["input_image"] == AD["product_image"] and sent["output_format"] == "png"
    assert sent["aspect_ratio"] == "9:16"  # nearest to 1080x1920
    assert all(word in sent["prompt"] for word in ("Built for the long way round", "Shop now", "vibrant", "#1d4ed8"))
    assert "input_image" not in model_input("black-forest-labs/flux-kontext-pro", {**AD, "product_image": None})
    assert model_input("black-forest-labs/flux-schnell", AD)["num_outputs"] == 1


def test_a_video_and_a_voice_map_to_their_models_inputs():
    video = model_input("minimax/video-01", {"script": "Dry feet all day", "style": "bold", "duration_s": 3})
    assert video == {"prompt": "Dry feet all day (bold user-generated video style)", "prompt_optimizer": True}
    assert model_input("jaaari/kokoro-82m:f559560e", {"text": "Hi", "voice": "bm_george"})["voice"] == "bm_george"
    assert model_input("jaaari/kokoro-82m", {"text": "Hi", "voice": "default"}) == {"text": "Hi", "voice": "af_bella",
                                                                                 "speed": 1}


def test_a_model_genrail_does_not_know_gets_the_job_input_unchanged():
    job = {"text": "Hi", "voice": "default", "duration_s": 1.5}
    assert model_input("genrail/tts", job) is job and model_input("someone/their-model:abc", job) is job


@pytest.mark.parametrize("recorded, model", [("flux-kontext-pro.json", "black-forest-labs/flux-kontext-pro"),
                                             ("flux-schnell.json", "black-forest-labs/flux-schnell"),
                                             ("minimax-video-01.json", "minimax/video-01"),
                                             ("kokoro-82m.json", "jaaari/kokoro-82m")])
def test_a_recorded_prediction_of_each_model_gives_outputs_from_an_allowed_host(recorded, model):
    body = json.loads((RECORDED / recorded).read_text())
    assert body["model"] == model and model in MAPPINGS
    assert set(body["input"]) <= set(model_input(model, {**AD, "script": "x", "text": "x"})) | {"prompt_optimizer"}
    prediction = Prediction.from_object(body)
    assert prediction.finished and prediction.status == "succeeded"
    [url] = output_urls(prediction)
    default_hosts = tuple(FetchSettings.model_fields["provider_output_hosts"].default.split(","))
    assert output_host_allowed(url, default_hosts)
