#!/usr/bin/env python
"""Cost of switching a LoRA student's UNet to its zero-copy teacher and back, per teacher call.

    python scripts/bench_teacher_toggle.py          # CPU, meta tensors (no weights allocated)

SD 1.5- and SDXL-shaped ``UNet2DConditionModel``s (their published architectures) are built on the meta
device with an LCM-LoRA-style adapter (attention, feed-forward, projections, resnet convs), then the
adapters are switched off and on again: diffusers' ``disable_adapters()`` / ``enable_adapters()`` (what the
teacher did before) against :class:`tgsample.models.diffusers.net.AdapterSwitch` (the LoRA layers listed
once, each layer's flag flipped). Min / median of ``--repeats`` interleaved toggles.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SD15 = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL = dict(sample_size=128, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
            block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
           "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]


def meta_unet(config: dict):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        unet.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=TARGETS))
    return unet


def main() -> None:
    from tgsample.models.diffusers.net import AdapterSwitch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"CPU, meta tensors; one off + on toggle per teacher call, min / median of {a.repeats}, interleaved")
    for name, config in (("SD 1.5", SD15), ("SDXL", SDXL)):
        unet = meta_unet(config).requires_grad_(False)  # as tgsample holds a model: nothing trainable
        t = time.perf_counter()
        switch = AdapterSwitch(unet)
        listed = time.perf_counter() - t
        grads = [q.requires_grad for q in unet.parameters()]
        old, new = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            unet.disable_adapters()
            unet.enable_adapters()
            old.append(time.perf_counter() - t)
            t = time.perf_counter()
            switch.set(False)
            switch.set(True)
            new.append(time.perf_counter() - t)
        churn = sum(g != q.requires_grad for g, q in zip(grads, unet.parameters()))
        print(f"  {name:6s} ({len(switch.layers)} LoRA layers): diffusers disable/enable "
              f"{1e3 * min(old):8.3f} / {1e3 * statistics.median(old):8.3f} ms   AdapterSwitch "
              f"{1e6 * min(new):8.1f} / {1e6 * statistics.median(new):8.1f} us   "
              f"({statistics.median(old) / statistics.median(new):.0f}x; listing the layers once: "
              f"{1e3 * listed:.1f} ms; tensors diffusers' enable_adapters made trainable: {churn})")


if __name__ == "__main__":
    main()
