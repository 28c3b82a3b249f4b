"""Memory plans: the accounting at full size (meta device), the choice of plan, and a plan applied for real."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.memory_plan import (
    GIB,
    HOST,
    PLAN_8GB,
    PLAN_12GB,
    PLANS,
    RESIDENT,
    choose_plan,
    full_size_accounting,
)
from mmpp.inference.offload import STORAGE_DTYPE, Offloaded
from mmpp.inference.testing.random_configs import PARAMETER_COUNTS
from mmpp.settings import load_settings

# --- accounting at full size, no GPU --------------------------------------------------------------


@pytest.fixture(scope="module")
def accounted() -> dict[str, object]:
    return {name: full_size_accounting(plan) for name, plan in PLANS.items()}


def test_every_plan_fits_its_budget_at_batch_1_and_at_its_largest_batch(accounted: dict) -> None:
    for name, plan in PLANS.items():
        acc = accounted[name]
        assert acc.peak_gib(1) <= plan.budget_gib, (name, acc.peak_gib(1))
        assert acc.peak_gib(plan.max_batch) <= plan.budget_gib, (name, acc.peak_gib(plan.max_batch))
        # A plan claims no more than the accounting fits.
        assert plan.max_batch <= acc.largest_batch(), name
    # The small plans claim all they fit: one more image would not.
    for plan in (PLAN_12GB, PLAN_8GB):
        assert accounted[plan.name].peak_gib(plan.max_batch + 1) > plan.budget_gib


def test_the_weights_counted_are_productions_and_the_resident_plan_needs_a_big_card(accounted: dict) -> None:
    resident = accounted["resident"]
    every = sum(PARAMETER_COUNTS.values())
    # bf16: two bytes a parameter, every component of the published models counted once.
    assert sum(resident.weights.values()) == pytest.approx(2 * every, rel=1e-3)
    assert sum(resident.weights.values()) / 1e9 == pytest.approx(12.2, abs=0.1)
    # Everything resident does not fit a 12 GB card even before activations: why the 12gb plan exists.
    assert resident.resident_gib > PLAN_12GB.budget_gib


def test_fp8_halves_the_unet_and_controlnet_and_only_the_8gb_plan_pays_for_it(accounted: dict) -> None:
    bf16, fp8 = accounted["12gb"].weights, accounted["8gb"].weights
    for name in ("unet", "controlnet"):
        # Norms, in/out projections and embeddings stay in bf16: a little over half.
        assert 0.5 < fp8[name] / bf16[name] < 0.53, name
    assert fp8["vae"] == bf16["vae"]
    assert not PLAN_12GB.fp8 and PLAN_8GB.fp8
    # Offloading and the CPU text encoders take the same bytes off the GPU in both small plans.
    assert accounted["8gb"].bytes_where("cpu") == accounted["12gb"].bytes_where("cpu") > 1.4 * GIB


# --- which plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("gb", "plan"), [(24, "resident"), (20, "resident"), (16, "12gb"), (12, "12gb"),
                                          (11.8, "12gb"), (11, "8gb"), (8, "8gb"), (7.8, "8gb")])
def test_gpu_memory_gb_picks_the_largest_plan_the_card_holds(gb: float, plan: str) -> None:
    settings = load_settings(None, gpu_memory_gb=str(gb))
    chosen, why = choose_plan(settings.memory_plan, settings.gpu_memory_gb, torch.device("cuda"))
    assert chosen.name == plan
    assert "GPU_MEMORY_GB" in why


def test_a_card_below_every_plan_gets_the_smallest_and_is_told() -> None:
    chosen, why = choose_plan("auto", 6, torch.device("cuda"))
    assert chosen is PLAN_8GB and "may not fit" in why


def test_memory_plan_by_name_overrides_and_a_cpu_gets_no_constraint() -> None:
    from mmpp.inference.engine import fit_to_plan
    from mmpp.inference.speed import SpeedOptions

    settings = load_settings(None)  # both settings left unset
    assert (settings.memory_plan, settings.gpu_memory_gb) == ("auto", None)
    plan = choose_plan(settings.memory_plan, settings.gpu_memory_gb, torch.device("cpu"))[0]
    assert plan is HOST and plan.where("resident") == list(plan.placements())
    assert fit_to_plan(SpeedOptions(max_batch_size=8), plan).max_batch_size == 8
    named = load_settings(None, memory_plan="8gb", gpu_memory_gb="24")
    assert choose_plan(named.memory_plan, named.gpu_memory_gb, torch.device("cuda"))[0] is PLAN_8GB


def test_a_plan_caps_the_batch_and_turns_compile_off_only_over_fp8() -> None:
    from mmpp.inference.engine import fit_to_plan
    from mmpp.inference.speed import SpeedOptions

    asked = SpeedOptions(compile="default", max_batch_size=4)
    assert fit_to_plan(asked, RESIDENT) == asked
    assert (fit_to_plan(asked, PLAN_12GB).compile, fit_to_plan(asked, PLAN_12GB).max_batch_size) == ("default", 2)
    assert (fit_to_plan(asked, PLAN_8GB).compile, fit_to_plan(asked, PLAN_8GB).max_batch_size) == ("off", 2)
    assert fit_to_plan(SpeedOptions(max_batch_size=1), PLAN_8GB).max_batch_size == 1  # never raised


# --- offloading hooks -----------------------------------------------------------------------------


def test_an_offloaded_model_visits_the_device_for_its_forward_and_leaves_nothing_there() -> None:
    """The meta device stands in for the GPU: weights are elsewhere only while the forward runs."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 4))
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[torch.device] = []
    model[2].register_forward_pre_hook(lambda m, args: seen.append(m.weight.device))
    offloaded = Offloaded(model, torch.device("meta"))
    out = model(torch.randn(2, 8))  # a CPU input is moved to the device with the weights
    assert out.device.type == "meta" and seen == [torch.device("meta")]
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with offloaded.onloaded():
        assert all(p.device.type == "meta" for p in model.parameters())
        model(torch.randn(1, 8))  # nested: stays on the device until the block ends
        assert all(p.device.type == "meta" for p in model.parameters())
    assert all(p.device.type == "cpu" for p in model.parameters())


# --- a plan applied to the real engine (tiny model) ------------------------------------------------


@pytest.fixture(scope="module")
def engine_8gb(tiny_model_dir: Path) -> Engine:
    settings = load_settings(None, model_dir=tiny_model_dir, device="cpu", dtype="float32", memory_plan="8gb")
    return Engine.from_settings(settings)


def test_the_8gb_plan_draws_with_fp8_weights_offloaded_encoders_and_a_capped_batch(
    engine_8gb: Engine, engine: Engine, selfie_bytes: bytes
) -> None:
    pipe = engine_8gb.pipe
    convs = [m for m in pipe.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() > 1000]
    assert convs and all(m.weight.dtype == STORAGE_DTYPE for m in convs)
    # LoRA layers keep the compute dtype (fp8 would round the style away).
    loras = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    assert loras and all(p.dtype == torch.float32 for p in loras)
    assert engine_8gb.preferred_batch_size == PLAN_8GB.max_batch < load_settings(None).max_batch_size
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    assert engine_8gb.safety is not None and engine_8gb.safety.onload.__self__.module is engine_8gb.safety.model
    face = engine_8gb.prepare(selfie_bytes)
    results = engine_8gb.generate([GenerationRequest(face=face, style="tiny-style", seed=s) for s in (1, 2)])
    assert all(r.image is not None and r.image.size == (engine_8gb.resolution,) * 2 for r in results)
    # The same weights in fp8 draw nearly the same picture as the resident engine (not noise of its own).
    import numpy as np

    resident = engine.generate([GenerationRequest(face=engine.prepare(selfie_bytes), style="tiny-style", seed=1)])
    a, b = (np.asarray(r.image, dtype=np.int16) for r in (results[0], resident[0]))
    assert np.abs(a - b).mean() < 12


def test_the_start_line_names_the_plan_and_its_accounting(tiny_model_dir: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(None, model_dir=tiny_model_dir, device="cpu", dtype="float32", memory_plan="12gb")
    with caplog.at_level(logging.INFO, logger="mmpp.inference.memory_plan"):
        Engine.from_settings(settings)
    record = next(r for r in caplog.records if r.getMessage() == "memory plan")
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["plan"] == "12gb" and fields["chosen_by"] == "MEMORY_PLAN"
    assert fields["cpu"] == "text_encoders" and fields["offloaded"] == "image_encoder,safety_checker"
    assert fields["fp8"] is False and fields["vae_tiling"] is True and fields["max_batch"] == 2
    assert fields["resident_gib"] > 0 and fields["accounted_peak_gib"] <= fields["budget_gib"]


async def test_the_queue_never_batches_more_than_the_plan_fits(engine_8gb: Engine, tiny_model_dir: Path,
                                                              selfie_bytes: bytes) -> None:
    from mmpp.inference.queue.gpu_queue import GenerationQueue
    from mmpp.inference.queue.jobs import Done

    settings = load_settings(None, model_dir=tiny_model_dir, device="cpu", dtype="float32", memory_plan="8gb")
    assert settings.max_batch_size == 4  # the default asks for more than the plan fits
    batches: list[int] = []
    generate = engine_8gb.generate

    def counted(requests, on_step=None):  # type: ignore[no-untyped-def]
        batches.append(len(requests))
        return generate(requests, on_step)

    engine_8gb.generate = counted  # type: ignore[method-assign]
    queue = GenerationQueue(engine_8gb, settings, stop_timeout_s=5)
    try:
        face = engine_8gb.prepare(selfie_bytes)
        # Four members at once, one style: all waiting before the worker's first pick.
        handles = [queue.submit(face, "tiny-style", user_id=u, guild_id=1, steps=1, previews=False)
                   for u in range(4)]
        queue.start()
        outcomes = [await h.outcome() for h in handles]
    finally:
        await queue.shutdown(grace_s=5)
        del engine_8gb.generate
    assert all(isinstance(o, Done) for o in outcomes)
    assert queue.max_batch_size == PLAN_8GB.max_batch
    assert sum(batches) == 4 and max(batches) == PLAN_8GB.max_batch


# --- the activation allowance against a trace -----------------------------------------------------

# What the trace cannot see (cuDNN workspaces, the allocator's rounding) must fit in what the
# allowance adds over it.
TRACE_MARGIN = 1.5


def test_the_activation_allowance_clears_a_meta_device_trace_of_the_full_size_models() -> None:
    from mmpp.inference.memory_plan import activation_gib
    from mmpp.inference.memory_trace import denoise_step_gib, vae_decode_gib
    from mmpp.inference.testing.random_model import component_builders
    from mmpp.inference.testing.random_spec import FULL, default_dtype

    builders = component_builders(FULL)
    with torch.device("meta"), default_dtype(torch.bfloat16):
        unet, controlnet, vae = builders["unet"](), builders["controlnet"](), builders["vae"]()
    one = denoise_step_gib(unet, controlnet, 1)
    assert 0.2 < one < 2  # a real trace of 1024² with CFG, not an empty one
    four = denoise_step_gib(unet, controlnet, 4)
    per_image = (four - one) / 3  # activations grow linearly with the batch
    for plan in PLANS.values():
        for batch in sorted({1, plan.max_batch}):
            allowance = activation_gib(plan, batch)["denoise"]
            assert allowance >= TRACE_MARGIN * (one + per_image * (batch - 1)), (plan.name, batch)
    whole, tiled = vae_decode_gib(vae, tiling=False), vae_decode_gib(vae, tiling=True)
    assert tiled < whole / 2  # tiles do save memory at 1024²
    assert activation_gib(RESIDENT, 1)["vae_decode"] >= TRACE_MARGIN * whole
    assert activation_gib(PLAN_8GB, 1)["vae_decode"] >= TRACE_MARGIN * tiled
