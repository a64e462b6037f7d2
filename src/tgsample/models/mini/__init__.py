"""The miniature of Stable Diffusion shipped in the package (docs: "The miniature").

Real 28x28 MNIST digits with measured captions (`data`), diffusers components in diffusers'
own layout under `models/weights/mini` (`components`), trained by `training`
(`scripts/train_mini.py`); students registered as `mini-lcm`, `mini-lcm-lora` and
`mini-lightning`, teacher `mini` (`zoo`, recipes in `recipes`); the shipped
digit-and-attribute classifier scores samples (`classifier`).
"""
