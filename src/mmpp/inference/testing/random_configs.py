"""The published configs of the models the bot serves, for the random-weight builders.

Copied from each model's `config.json` on the hub (nothing here can download them);
`tests/engine/test_random_model.py` builds them on the meta device and compares the parameter
counts below, so a config that drifts from production fails there.
"""

from __future__ import annotations

from typing import Any

# --- stabilityai/stable-diffusion-xl-base-1.0 -------------------------------------------------------
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# The base repo's VAE and madebyollin/sdxl-vae-fp16-fix (production's VAE setting) share this
# architecture; the fp16-fix one does not need the fp32 upcast, which only matters in float16.
SDXL_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": False,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# CLIP ViT-L/14's text tower. bos/eos ids are the published configs' (0 and 2): with eos_token_id 2
# transformers pools at the highest token id, which is <|endoftext|> (49407) in CLIP's vocabulary.
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# OpenCLIP ViT-bigG/14's text tower.
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    **SDXL_TEXT_ENCODER,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

SDXL_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

# --- diffusers/controlnet-canny-sdxl-1.0 -----------------------------------------------------------
CONTROLNET_CANNY_SDXL: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "class_embed_type": None,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "global_pool_conditions": False,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": [1, 2, 10],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# --- h94/IP-Adapter models/image_encoder: OpenCLIP ViT-H/14 --------------------------------------
IMAGE_ENCODER_VIT_H: dict[str, Any] = {
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "image_size": 224,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "projection_dim": 1024,
}

# --- h94/IP-Adapter sdxl_models/ip-adapter-plus-face_sdxl_vit-h: the Resampler -------------------
# IP-Adapter's IPAdapterPlusXL: Resampler(dim=1280, depth=4, dim_head=64, heads=20, num_queries=16,
# embedding_dim=<image encoder hidden size>, output_dim=<UNet cross_attention_dim>, ff_mult=4).
PLUS_FACE_RESAMPLER: dict[str, int] = {
    "embed_dims": 1280,
    "output_dims": 2048,
    "hidden_dims": 1280,
    "depth": 4,
    "dim_head": 64,
    "heads": 20,
    "num_queries": 16,
    "ffn_ratio": 4,
}

# --- CompVis/stable-diffusion-safety-checker: CLIP ViT-L/14's vision tower + concept embeddings -----
SAFETY_CHECKER_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "image_size": 224,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
}
SAFETY_CHECKER_PROJECTION_DIM = 768

PLUS_FACE_WEIGHT_NAME = "ip-adapter-plus-face_sdxl_vit-h.safetensors"
LORA_RANK = 64
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]

# Parameter counts of the published models, derived from the configs above on the meta device and
# checked by a test: a config that drifts from production changes one of these.
PARAMETER_COUNTS: dict[str, int] = {
    "unet": 2_567_463_684,
    "controlnet": 1_251_014_160,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "image_encoder": 632_076_800,
    # The Plus-face IP-Adapter: its Resampler and the image key/value projections it adds to the UNet.
    "image_projection": 82_961_664,
    "ip_adapter_layers": 340_787_200,
    "safety_checker": 303_981_588,
}
